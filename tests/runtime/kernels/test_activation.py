"""Activations and Softmax / LogSoftmax / Hardmax against onnx's reference evaluator on generated inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.runtime.kernels.test_elementwise import (
    FLOATS,
    LATEST,
    check_against_reference,
    random_array,
    run_ours,
    seeds,
    single_op_model,
)

shapes = st.lists(st.integers(0, 4), max_size=4).map(tuple)
positive = st.floats(0.05, 3.0)

# op -> (first opset to test at, strategy for its attributes)
ACTIVATIONS: dict[str, tuple[int, st.SearchStrategy[dict[str, Any]]]] = {
    "Relu": (14, st.just({})),
    "LeakyRelu": (16, st.fixed_dictionaries({}, optional={"alpha": positive})),
    "Elu": (6, st.fixed_dictionaries({}, optional={"alpha": positive})),
    "Selu": (6, st.fixed_dictionaries({}, optional={"alpha": positive, "gamma": positive})),
    "Celu": (12, st.fixed_dictionaries({}, optional={"alpha": positive})),
    "Sigmoid": (13, st.just({})),
    "HardSigmoid": (6, st.fixed_dictionaries({}, optional={"alpha": positive, "beta": st.floats(-1, 1)})),
    "HardSwish": (14, st.just({})),
    "Softplus": (1, st.just({})),
    "Softsign": (1, st.just({})),
    "Tanh": (13, st.just({})),
    "Gelu": (20, st.fixed_dictionaries({}, optional={"approximate": st.sampled_from(["none", "tanh"])})),
    "Mish": (18, st.just({})),
    "Swish": (24, st.fixed_dictionaries({}, optional={"alpha": positive})),
    "ThresholdedRelu": (10, st.fixed_dictionaries({}, optional={"alpha": st.floats(-1, 2)})),
    "Shrink": (9, st.fixed_dictionaries({}, optional={"bias": st.floats(-1, 1), "lambd": st.floats(0, 2)})),
}
# Ops whose float16 support came later than the opset they are first tested at.
FLOAT32_ONLY_BEFORE = {"Celu": 28}


@settings(max_examples=40, deadline=None)
@given(
    op=st.sampled_from(sorted(ACTIVATIONS)),
    data=st.data(),
    dtype=st.sampled_from(FLOATS),
    shape=shapes,
    latest=st.booleans(),
    seed=seeds,
)
def test_activations_match_the_reference(
    op: str, data: st.DataObject, dtype: Any, shape: tuple[int, ...], latest: bool, seed: int
) -> None:
    first, attributes = ACTIVATIONS[op]
    opset = LATEST if latest else first
    if dtype != np.float32 and opset < FLOAT32_ONLY_BEFORE.get(op, 0):
        opset = FLOAT32_ONLY_BEFORE[op]
    attrs = data.draw(attributes)
    if op == "Softsign" and shape == ():
        shape = (1,)  # onnx's Softsign writes into np.abs's result, a numpy scalar for 0-d input
    x = random_array(np.random.default_rng(seed), shape, dtype, -6, 6)
    # We compute float16 in float32 and round once; the reference rounds after each step.
    tolerance = 1e-2 if dtype == np.float16 else None
    if op in ("Gelu", "HardSwish") and dtype == np.float64:
        tolerance = 1e-7  # onnx's erf rounds through float32, its HardSwish uses alpha = float32(1/6)
    check_against_reference(op, [x], opset=opset, rtol=tolerance, atol=tolerance or 0.0, **attrs)


def test_sigmoid_is_accurate_far_into_the_tails() -> None:
    x = np.array([-80.0, -30.0, -1.0, 0.0, 30.0, 100.0], dtype=np.float32)
    (out,) = run_ours(single_op_model("Sigmoid", [x]), [x])
    expected = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out[0] > 0  # e^-80 is a normal float32: no underflow to 0


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
def test_relu_and_shrink_on_integers(dtype: Any) -> None:
    x = np.array([[-5, -1, 0, 1, 5]], dtype=dtype)
    check_against_reference("Relu", [x], opset=14)
    check_against_reference("Shrink", [x], opset=9, bias=1.5, lambd=1.0)


@settings(max_examples=25, deadline=None)
@given(
    dtype=st.sampled_from([*FLOATS, np.int32, np.int64]),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    keep=st.lists(st.booleans(), min_size=4, max_size=4),
    drop=st.integers(0, 4),
    seed=seeds,
)
def test_prelu_broadcasts_slope(dtype: Any, shape: tuple[int, ...], keep: list[bool], drop: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # The slope is unidirectionally broadcastable: a suffix of x's shape with some dims set to 1.
    suffix = shape[min(drop, len(shape)) :]
    slope_shape = tuple(d if k else 1 for d, k in zip(suffix, keep))
    x = random_array(rng, shape, dtype, -5, 5)
    slope = random_array(rng, slope_shape, dtype, -3, 3)
    check_against_reference("PRelu", [x, slope], opset=16)


def test_prelu_before_opset7_has_per_channel_slope() -> None:
    x = np.arange(-12, 12, dtype=np.float32).reshape(2, 3, 2, 2)
    slope = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    (out,) = run_ours(single_op_model("PRelu", [x, slope], opset=6), [x, slope])
    np.testing.assert_allclose(out, np.where(x < 0, x * slope.reshape(3, 1, 1), x))


def coerced_2d_reference(op: str, x: np.ndarray, axis: int) -> np.ndarray:
    """The opset < 13 meaning, written out: rows of the 2-D view [prod(shape[:axis]), rest]."""
    axis = axis % x.ndim if x.ndim else 0
    rows = x.reshape(int(np.prod(x.shape[:axis])), -1).astype(np.float64)
    if op == "Hardmax":
        out = np.zeros_like(rows)
        out[np.arange(rows.shape[0]), rows.argmax(axis=1)] = 1
    else:
        shifted = rows - rows.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        out = shifted - log_sum if op == "LogSoftmax" else np.exp(shifted - log_sum)
    return out.reshape(x.shape).astype(x.dtype)


@settings(max_examples=30, deadline=None)
@given(
    op=st.sampled_from(["Softmax", "LogSoftmax", "Hardmax"]),
    opset=st.sampled_from([1, 11, 13, LATEST]),
    dtype=st.sampled_from(FLOATS),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    data=st.data(),
    seed=seeds,
)
def test_softmax_family_at_both_semantics(
    op: str, opset: int, dtype: Any, shape: tuple[int, ...], data: st.DataObject, seed: int
) -> None:
    low = -len(shape) if opset >= 11 else 0
    attrs = data.draw(st.fixed_dictionaries({}, optional={"axis": st.integers(low, len(shape) - 1)}))
    if opset < 13 and len(shape) == 1:
        attrs["axis"] = 0  # the default axis 1 is out of range for a vector
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape, dtype, -3, 3)
    if op == "Hardmax":
        x = np.round(x).astype(dtype)  # ties, which must go to the first maximum
    tolerance = 1e-2 if dtype == np.float16 else None
    if opset >= 13:
        check_against_reference(op, [x], opset=opset, rtol=tolerance, atol=tolerance or 0.0, **attrs)
        return
    # onnx's reference evaluator implements only the opset-13 meaning; checked against onnxruntime by hand.
    (out,) = run_ours(single_op_model(op, [x], opset=opset, **attrs), [x])
    expected = coerced_2d_reference(op, x, attrs.get("axis", 1))
    assert out.dtype == x.dtype and out.shape == x.shape
    np.testing.assert_allclose(out, expected, rtol=tolerance or 1e-5, atol=tolerance or 1e-6)


def test_softmax_before_13_normalises_over_all_trailing_axes() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 10
    (old,) = run_ours(single_op_model("Softmax", [x], opset=11), [x])
    np.testing.assert_allclose(old.sum(axis=(1, 2)), np.ones(2), rtol=1e-6)
    (new,) = run_ours(single_op_model("Softmax", [x], opset=13), [x])
    np.testing.assert_allclose(new.sum(axis=-1), np.ones((2, 3)), rtol=1e-6)


def test_softmax_handles_large_inputs() -> None:
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]], dtype=np.float32)
    check_against_reference("Softmax", [x], opset=13)
    # onnx's LogSoftmax is log(softmax), which gives -inf where the true value is merely very negative.
    (out,) = run_ours(single_op_model("LogSoftmax", [x], opset=13), [x])
    x64 = x.astype(np.float64)
    expected = x64 - x64.max(axis=-1, keepdims=True)
    expected -= np.log(np.exp(expected).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
