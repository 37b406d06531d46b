"""CumProd and TensorScatter against onnx's reference evaluator on generated inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels import misc_ops
from tests.runtime.kernels.test_elementwise import check_against_reference, random_array, seeds

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@settings(max_examples=20, deadline=None)
@given(
    shape=shapes,
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64]),
    axis_dtype=st.sampled_from([np.int32, np.int64]),
    exclusive=st.sampled_from([0, 1]),
    reverse=st.sampled_from([0, 1]),
    seed=seeds,
)
def test_cumprod_matches_the_reference(
    shape: tuple[int, ...], data: st.DataObject, dtype: Any, axis_dtype: Any, exclusive: int, reverse: int, seed: int
) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = random_array(np.random.default_rng(seed), shape, dtype, -3, 3)
    check_against_reference(
        "CumProd", [x, np.array(axis, dtype=axis_dtype)], opset=26, exclusive=exclusive, reverse=reverse
    )


def test_cumprod_examples_from_the_spec() -> None:
    x, axis = np.array([1.0, 2.0, 3.0], dtype=np.float32), np.array(0)
    cases = {(0, 0): [1, 2, 6], (1, 0): [1, 1, 2], (0, 1): [6, 6, 3], (1, 1): [6, 3, 1]}
    for (exclusive, reverse), expected in cases.items():
        out = misc_ops.CumProd(x, axis, exclusive=exclusive, reverse=reverse)
        np.testing.assert_array_equal(out, np.array(expected, dtype=np.float32))
        assert out.dtype == np.float32


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3),
    dims=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    data=st.data(),
    mode=st.sampled_from(["linear", "circular"]),
    with_indices=st.booleans(),
    dtype=st.sampled_from([np.float32, np.int64, np.float16]),
    seed=seeds,
)
def test_tensorscatter_matches_the_reference(
    batch: int, dims: list[int], data: st.DataObject, mode: str, with_indices: bool, dtype: Any, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    rank = len(dims) + 1
    axis = data.draw(st.integers(1, rank - 1))
    max_len = data.draw(st.integers(1, 5))
    seq_len = data.draw(st.integers(0, max_len))
    cache_shape = [batch, *dims]
    cache_shape[axis] = max_len
    update_shape = list(cache_shape)
    update_shape[axis] = seq_len
    cache = random_array(rng, tuple(cache_shape), dtype)
    update = random_array(rng, tuple(update_shape), dtype)
    high = max_len - seq_len if mode == "linear" else 2 * max_len
    indices = rng.integers(0, high, batch, endpoint=True).astype(np.int64) if with_indices else None
    axis_attr = data.draw(st.sampled_from([axis, axis - rank]))
    check_against_reference("TensorScatter", [cache, update, indices], opset=24, mode=mode, axis=axis_attr)


def test_tensorscatter_circular_wraps_around() -> None:
    cache = np.zeros((1, 4, 1), dtype=np.float32)
    update = np.array([[[1.0], [2.0], [3.0]]], dtype=np.float32)
    out = misc_ops.TensorScatter(cache, update, np.array([2]), mode="circular")
    np.testing.assert_array_equal(out[0, :, 0], [3.0, 0.0, 1.0, 2.0])
    assert not cache.any()  # the past cache is not written in place


def test_tensorscatter_strings() -> None:
    cache = np.array([["a", "b", "c"]], dtype=object)
    out = misc_ops.TensorScatter(cache, np.array([["z"]], dtype=object), np.array([1]), axis=1)
    assert out.tolist() == [["a", "z", "c"]]


@pytest.mark.parametrize(
    ("cache_shape", "update_shape", "indices", "attrs", "message"),
    [
        ((1, 4, 2), (1, 3, 2), [2], {}, "linear mode"),
        ((1, 4, 2), (1, 3, 2), [-1], {}, "linear mode"),
        ((1, 4, 2), (1, 5, 2), None, {}, "except along axis"),
        ((1, 4, 2), (1, 3, 3), None, {}, "except along axis"),
        ((1, 4, 2), (1, 3, 2), [0, 0], {}, "write_indices"),
        ((1, 4, 2), (1, 4, 2), None, {"axis": 0}, "batch axis"),
        ((1, 4, 2), (1, 4, 2), None, {"mode": "ring"}, "mode"),
    ],
)
def test_tensorscatter_refuses_invalid_arguments(
    cache_shape: tuple[int, ...],
    update_shape: tuple[int, ...],
    indices: list[int] | None,
    attrs: dict[str, Any],
    message: str,
) -> None:
    write = None if indices is None else np.array(indices, dtype=np.int64)
    with pytest.raises(InvalidArgument, match=message):
        misc_ops.TensorScatter(np.zeros(cache_shape), np.zeros(update_shape), write, **attrs)


def test_cumprod_refuses_a_bad_axis() -> None:
    with pytest.raises(InvalidArgument, match="axis"):
        misc_ops.CumProd(np.ones((2, 2)), np.array(2))
