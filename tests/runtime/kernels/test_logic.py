"""Comparisons, boolean logic and Where against onnx's reference evaluator on generated broadcast shapes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

from tests.runtime.kernels.test_elementwise import (
    FLOATS,
    INTS,
    check_against_reference,
    pairs_of_shapes,
    random_array,
    run_ours,
    seeds,
    single_op_model,
)

COMPARISONS = {
    "Equal": np.equal,
    "Less": np.less,
    "LessOrEqual": np.less_equal,
    "Greater": np.greater,
    "GreaterOrEqual": np.greater_equal,
}


@settings(max_examples=30, deadline=None)
@given(
    op=st.sampled_from(sorted(COMPARISONS)),
    dtype=st.sampled_from(FLOATS + INTS),
    shapes=pairs_of_shapes,
    seed=seeds,
)
def test_comparisons_return_bool(op: str, dtype: Any, shapes: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # A narrow value range makes equal pairs common.
    a, b = (random_array(rng, shape, dtype, 0, 3) for shape in shapes.input_shapes)
    (out,) = check_against_reference(op, [a, b], out_dtypes=[np.bool_])
    np.testing.assert_array_equal(out, COMPARISONS[op](a, b))


def test_equal_on_strings_broadcasts() -> None:
    a = np.array([["a", "bc"], ["", "x"]], dtype=object)
    b = np.array(["a", "x"], dtype=object)
    (out,) = run_ours(single_op_model("Equal", [a, b], out_dtypes=[np.bool_]), [a, b])
    np.testing.assert_array_equal(out, np.array([[True, False], [False, True]]))


@settings(max_examples=25, deadline=None)
@given(op=st.sampled_from(["And", "Or", "Xor", "Not"]), shapes=pairs_of_shapes, seed=seeds)
def test_boolean_logic(op: str, shapes: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    inputs = [random_array(rng, shape, np.bool_) for shape in shapes.input_shapes]
    check_against_reference(op, inputs[:1] if op == "Not" else inputs)


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater", "And", "Or", "Xor"])
def test_opset1_broadcast_attribute(op: str) -> None:
    rng = np.random.default_rng(0)
    dtype = {"And": np.bool_, "Or": np.bool_, "Xor": np.bool_, "Equal": np.int32}.get(op, np.float32)
    a = random_array(rng, (2, 3, 4), dtype, 0, 2)
    b = random_array(rng, (3,), dtype, 0, 2)
    (out,) = run_ours(single_op_model(op, [a, b], opset=6, out_dtypes=[np.bool_], broadcast=1, axis=1), [a, b])
    fn = {"Equal": np.equal, "Less": np.less, "Greater": np.greater}.get(op) or getattr(np, f"logical_{op.lower()}")
    np.testing.assert_array_equal(out, fn(a, b.reshape(3, 1)))


@settings(max_examples=25, deadline=None)
@given(
    dtype=st.sampled_from(FLOATS + [np.int8, np.int64, np.uint16, np.bool_]),
    shapes=mutually_broadcastable_shapes(num_shapes=3, max_dims=4, max_side=3),
    seed=seeds,
)
def test_where_broadcasts_three_ways(dtype: Any, shapes: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    condition = random_array(rng, shapes.input_shapes[0], np.bool_)
    x, y = (random_array(rng, shape, dtype, -9, 9) for shape in shapes.input_shapes[1:])
    (out,) = check_against_reference("Where", [condition, x, y], out_dtypes=[dtype])
    assert out.shape == shapes.result_shape


def test_where_on_strings() -> None:
    condition = np.array([True, False])
    x = np.array(["yes", "yes"], dtype=object)
    y = np.array(["no", "no"], dtype=object)
    (out,) = run_ours(single_op_model("Where", [condition, x, y], out_dtypes=[object]), [condition, x, y])
    assert out.tolist() == ["yes", "no"]
