"""Adagrad, Adam and Momentum of ai.onnx.preview.training (preview_training.py) against onnx's reference.

Hypothesis draws the number of optimized tensors, their shapes, the step count (0 takes the first-step
branches) and the attributes. Values must agree within float32 rounding; dtypes must be the inputs' (the
spec's T3), which the reference does not always keep (its Adam returns float64 for float32 inputs when
T > 0 and float32 for float64 inputs with several tensors), so dtypes are checked against the inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument
from tests.runtime.kernels.test_quantize import TRAINING, Inputs, build, feed_of

STATES = {"Adagrad": 1, "Adam": 2, "Momentum": 1}


@st.composite
def optimizer_cases(draw: st.DrawFn, op: str) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    shapes = [tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(0, 3)))) for _ in range(count)]
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    attrs: dict[str, Any]
    if op == "Adagrad":
        attrs = {
            "decay_factor": draw(st.sampled_from([0.0, 0.1])),
            "epsilon": 1e-6,
            "norm_coefficient": draw(st.sampled_from([0.0, 0.01])),
        }
    elif op == "Adam":
        attrs = {
            "alpha": draw(st.sampled_from([0.9, 0.95])),
            "beta": draw(st.sampled_from([0.999, 0.9])),
            "epsilon": 1e-6,
            "norm_coefficient": draw(st.sampled_from([0.0, 0.001])),
            "norm_coefficient_post": draw(st.sampled_from([0.0, 0.01])),
        }
    else:
        attrs = {
            "alpha": draw(st.sampled_from([0.9, 0.5])),
            "beta": draw(st.sampled_from([1.0, 0.1])),
            "mode": draw(st.sampled_from(["standard", "nesterov"])),
            "norm_coefficient": draw(st.sampled_from([0.0, 0.001])),
        }
    return {
        "shapes": shapes,
        "dtype": dtype,
        "attrs": attrs,
        "step": draw(st.sampled_from([0, 1, 5])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _check(op: str, case: dict[str, Any]) -> None:
    rng = np.random.default_rng(case["seed"])
    dtype, shapes = case["dtype"], case["shapes"]
    blocks = ["x", "g", *(f"s{i}" for i in range(STATES[op]))]
    tensors = {
        block: [
            rng.uniform(0 if block == "s1" or op == "Adagrad" and block == "s0" else -1, 1, size=s).astype(dtype)
            for s in shapes
        ]
        for block in blocks
    }
    inputs: Inputs = [("R", np.array(0.1, dtype=dtype)), ("T", np.array(case["step"], dtype=np.int64))]
    inputs += [(f"{block}{i}", value) for block in blocks for i, value in enumerate(tensors[block])]
    outputs = len(shapes) * (1 + STATES[op])
    proto = build(op, inputs, case["attrs"], outputs=outputs, opset=18, domain=TRAINING)
    ours = InferenceSession(proto.SerializeToString()).run(None, feed_of(inputs))
    expected = ReferenceEvaluator(proto).run(None, feed_of(inputs))
    assert len(ours) == outputs
    for index, (got, want) in enumerate(zip(ours, expected)):
        assert isinstance(got, np.ndarray)
        assert got.dtype == dtype, (index, got.dtype)
        assert got.shape == np.shape(want) == shapes[index % len(shapes)]
        np.testing.assert_allclose(got, np.asarray(want, dtype=np.float64), rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(optimizer_cases("Adagrad"))
def test_adagrad_matches_reference(case: dict[str, Any]) -> None:
    _check("Adagrad", case)


@settings(max_examples=20, deadline=None)
@given(optimizer_cases("Adam"))
def test_adam_matches_reference(case: dict[str, Any]) -> None:
    _check("Adam", case)


@settings(max_examples=20, deadline=None)
@given(optimizer_cases("Momentum"))
def test_momentum_matches_reference(case: dict[str, Any]) -> None:
    _check("Momentum", case)


def test_momentum_first_step_ignores_beta() -> None:
    x, g, v = np.array([1.0], np.float32), np.array([2.0], np.float32), np.array([3.0], np.float32)
    inputs: Inputs = [("R", np.array(0.5, np.float32)), ("T", np.array(0, np.int64)), ("x", x), ("g", g), ("v", v)]
    attrs = {"alpha": 0.5, "beta": 0.1, "mode": "standard", "norm_coefficient": 0.0}
    proto = build("Momentum", inputs, attrs, outputs=2, opset=18, domain=TRAINING)
    x_new, v_new = InferenceSession(proto.SerializeToString()).run(None, feed_of(inputs))
    assert v_new.tolist() == [0.5 * 3.0 + 2.0] and x_new.tolist() == [1.0 - 0.5 * 3.5]


def test_mismatched_blocks_are_rejected() -> None:
    inputs: Inputs = [("R", np.array(0.1, np.float32)), ("T", np.array(1, np.int64))]
    inputs += [(name, np.zeros(2, np.float32)) for name in ("x0", "x1", "g0", "g1", "h0")]
    proto = build("Adagrad", inputs, {}, outputs=2, opset=18, domain=TRAINING)
    with pytest.raises(InvalidArgument, match="blocks"):
        InferenceSession(proto.SerializeToString()).run(None, feed_of(inputs))
