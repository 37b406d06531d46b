"""Random generators: seeded draws equal onnx's reference, unseeded draws are fresh and follow the distribution.

Statistical assertions use 6 standard errors, so a correct kernel fails with probability ~1e-9 per check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels import random
from onnxforge.runtime.session import InferenceSession
from tests.runtime.kernels.test_elementwise import (
    assert_same,
    check_against_reference,
    feeds,
    run_reference,
    single_op_model,
)

FLOAT_TYPES = {TensorProto.FLOAT16: np.float16, TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64}
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3)
seeds = st.integers(0, 10_000).map(float)


def draws(model: Any, inputs: list[np.ndarray], count: int) -> np.ndarray:
    session = InferenceSession(model.SerializeToString())
    feed = feeds(model, inputs)
    return np.stack([session.run(None, feed)[0] for _ in range(count)]).astype(np.float64)


def assert_mean(sample: np.ndarray, mean: np.ndarray | float, var: np.ndarray | float) -> None:
    """Per-element sample mean within 6 standard errors of ``mean`` (plus a small floor for p near 0 or 1)."""
    bound = 6 * np.sqrt(np.asarray(var) / sample.shape[0]) + 3 / sample.shape[0]
    assert np.all(np.abs(sample.mean(axis=0) - mean) <= bound), (sample.mean(axis=0), mean, bound)


@settings(max_examples=20, deadline=None)
@given(
    op=st.sampled_from(["RandomNormal", "RandomUniform"]),
    dtype=st.sampled_from(sorted(FLOAT_TYPES)),
    shape=shapes,
    seed=seeds,
    params=st.tuples(st.floats(-3, 3), st.floats(0.5, 3)),
)
def test_seeded_generators_equal_the_reference(
    op: str, dtype: int, shape: list[int], seed: float, params: tuple[float, float]
) -> None:
    first, second = params
    attrs = {"mean": first, "scale": second} if op == "RandomNormal" else {"low": first, "high": first + second}
    model = single_op_model(op, [], out_dtypes=[FLOAT_TYPES[dtype]], shape=shape, dtype=dtype, seed=seed, **attrs)
    (ours,) = InferenceSession(model.SerializeToString()).run(None, {})
    (again,) = InferenceSession(model.SerializeToString()).run(None, {})
    np.testing.assert_array_equal(ours, again)
    assert_same(ours, run_reference(model, [])[0], rtol=0, atol=0)


@settings(max_examples=20, deadline=None)
@given(
    op=st.sampled_from(["RandomNormalLike", "RandomUniformLike", "Bernoulli"]),
    in_dtype=st.sampled_from([np.float32, np.float64]),
    out_dtype=st.sampled_from([None, *sorted(FLOAT_TYPES)]),
    shape=shapes,
    seed=seeds,
)
def test_seeded_like_ops_equal_the_reference(
    op: str, in_dtype: Any, out_dtype: int | None, shape: list[int], seed: float
) -> None:
    x = np.random.default_rng(int(seed)).uniform(0, 1, shape).astype(in_dtype)
    attrs = {"seed": seed} if out_dtype is None else {"seed": seed, "dtype": out_dtype}
    out = [in_dtype if out_dtype is None else FLOAT_TYPES[out_dtype]]
    check_against_reference(op, [x], out_dtypes=out, rtol=0, atol=0, **attrs)


def test_seeded_draws_repeat_and_unseeded_draws_are_fresh() -> None:
    seeded = single_op_model("RandomNormal", [], out_dtypes=[np.float32], shape=[50], seed=3.0)
    fresh = single_op_model("RandomNormal", [], out_dtypes=[np.float32], shape=[50])
    a, b = draws(seeded, [], 2)
    np.testing.assert_array_equal(a, b)
    c, d = draws(fresh, [], 2)
    assert not np.array_equal(c, d)


def test_normal_and_uniform_follow_their_distribution() -> None:
    model = single_op_model(
        "RandomNormal", [], out_dtypes=[np.float64], shape=[4], dtype=TensorProto.DOUBLE, mean=2.0, scale=3.0
    )
    normal = draws(model, [], 400)
    assert_mean(normal, 2.0, 9.0)
    assert_mean((normal - 2.0) ** 2, 9.0, 2 * 81.0)  # the variance, with Var((x - mu)^2) = 2 sigma^4
    x = np.zeros((3, 2), dtype=np.float32)
    uniform = draws(single_op_model("RandomUniformLike", [x], low=-1.0, high=5.0), [x], 400)
    assert uniform.min() >= -1.0 and uniform.max() <= 5.0
    assert_mean(uniform, 2.0, 36 / 12)


@pytest.mark.parametrize("out_dtype", [None, TensorProto.INT32, TensorProto.BOOL, TensorProto.DOUBLE])
def test_bernoulli_is_binary_with_mean_p(out_dtype: int | None) -> None:
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0], dtype=np.float32)
    attrs = {} if out_dtype is None else {"dtype": out_dtype}
    expected_dtype = {None: np.float32, TensorProto.INT32: np.int32, TensorProto.BOOL: np.bool_}.get(
        out_dtype, np.float64
    )
    model = single_op_model("Bernoulli", [p], out_dtypes=[expected_dtype], **attrs)
    (one,) = InferenceSession(model.SerializeToString()).run(None, {"x0": p})
    assert one.dtype == expected_dtype and one.shape == p.shape
    sample = draws(model, [p], 400)
    assert np.isin(sample, (0.0, 1.0)).all()
    assert_mean(sample, p, p * (1 - p))


@pytest.mark.parametrize("dtype", [TensorProto.INT32, TensorProto.INT64])
def test_multinomial_frequencies_follow_softmax(dtype: int) -> None:
    logits = np.log(np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]], dtype=np.float32) + 1e-30)
    out_dtype = np.int32 if dtype == TensorProto.INT32 else np.int64
    model = single_op_model("Multinomial", [logits], out_dtypes=[out_dtype], dtype=dtype, sample_size=1000)
    (samples,) = InferenceSession(model.SerializeToString()).run(None, {"x0": logits})
    assert samples.dtype == out_dtype and samples.shape == (2, 1000)
    assert set(np.unique(samples[1])) == {1}  # zero-probability classes are never drawn
    for c, p in enumerate([0.2, 0.3, 0.5]):
        assert_mean((samples[0] == c)[:, None].astype(np.float64), p, p * (1 - p))


def test_multinomial_seed_reproduces() -> None:
    logits = np.zeros((3, 4), dtype=np.float32)
    model = single_op_model("Multinomial", [logits], out_dtypes=[np.int32], sample_size=20, seed=1.0)
    first, second = draws(model, [logits], 2)
    np.testing.assert_array_equal(first, second)
    assert first.min() >= 0 and first.max() <= 3


@pytest.mark.parametrize(
    ("op", "inputs", "attrs", "message"),
    [
        ("Bernoulli", [np.array([0.5, 1.5], dtype=np.float32)], {}, "probabilities"),
        ("Bernoulli", [np.array([np.nan], dtype=np.float32)], {}, "probabilities"),
        ("RandomNormal", [], {"shape": [2], "dtype": TensorProto.INT32}, "dtype"),
        ("RandomUniformLike", [np.zeros(2, dtype=np.int64)], {}, "float dtype"),
        ("RandomUniform", [], {"shape": [2], "low": 2.0, "high": 1.0}, "low"),
        ("RandomNormal", [], {"shape": [2, -1]}, "negative"),
        ("Multinomial", [np.zeros(3, dtype=np.float32)], {}, "batch_size"),
        ("Multinomial", [np.zeros((1, 3), dtype=np.float32)], {"dtype": TensorProto.FLOAT}, "int32 or int64"),
        ("Multinomial", [np.full((1, 2), -np.inf, dtype=np.float32)], {}, "finite"),
    ],
)
def test_invalid_arguments_are_refused(op: str, inputs: list[np.ndarray], attrs: dict[str, Any], message: str) -> None:
    # the kernels directly: onnx's type inference already refuses some of these models at load
    with pytest.raises(InvalidArgument, match=message):
        getattr(random, op)(*inputs, **attrs)
