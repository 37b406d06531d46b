"""RNN / GRU / LSTM with constant weights: the kernel that ``prepare`` specialises (W and R, and B when
constant, packed once per node; the LSTM's exp form for its default activations) gives the numbers of the
unpacked path (weights as graph inputs) and of onnxruntime, run after run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession
from onnxforge.runtime.plan_builder import PlanBuilder
from tests.runtime.kernels.test_rnn import (
    GATES,
    ORT,
    case_attributes,
    case_inputs,
    feeds,
    make_inputs,
    rnn_model,
    runtime_cases,
)


def packed_steps(model: onnx.ModelProto) -> int:
    """How many steps of the model's plan run a kernel that ``prepare`` specialised (packed weights)."""
    irm = ir.serde.deserialize_model(model)
    plan = PlanBuilder(irm.opset_imports, optimize=False).build(irm.graph)
    return sum(getattr(step[0], "__name__", "") == "packed_kernel" for step in plan.steps)


@settings(max_examples=25, deadline=None)
@given(
    case=runtime_cases(),
    constants=st.sampled_from([("W", "R"), ("W", "R", "B"), ("W", "R", "B", "P", "initial_h", "initial_c")]),
    peepholes=st.booleans(),
)
def test_packed_weights_match_unpacked_path_and_onnxruntime(
    case: dict[str, Any], constants: tuple[str, ...], peepholes: bool
) -> None:
    op, hidden = case["op"], 4
    inputs = case_inputs(case, hidden, input_size=3, peepholes=peepholes)
    attrs = case_attributes(case, hidden)
    num_outputs = 3 if op == "LSTM" else 2
    packed_model = rnn_model(op, inputs, num_outputs, opset=14, constants=constants, **attrs)
    unpacked_model = rnn_model(op, inputs, num_outputs, opset=14, **attrs)
    assert packed_steps(packed_model) == 1 and packed_steps(unpacked_model) == 0
    packed = InferenceSession(packed_model.SerializeToString()).run(None, feeds(inputs, constants))
    unpacked = InferenceSession(unpacked_model.SerializeToString()).run(None, feeds(inputs))
    for want, have in zip(unpacked, packed):
        assert have.dtype == np.float32 and have.shape == want.shape
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6)
    if ORT is not None:
        session = ORT.InferenceSession(packed_model.SerializeToString(), providers=["CPUExecutionProvider"])
        # Unbounded gate activations (Affine, LeakyRelu, ...) amplify the engines' different rounding over
        # the steps; the packed-vs-unpacked check above stays tight.
        unbounded = any(a not in ("Sigmoid", "Tanh", "HardSigmoid", "ScaledTanh") for a in case["activations"] or [])
        tolerance = 1e-2 if unbounded else 1e-4
        for want, have in zip(session.run(None, feeds(inputs, constants)), packed):
            np.testing.assert_allclose(have, want, rtol=tolerance, atol=1e-5)


@pytest.mark.parametrize("op", sorted(GATES))
def test_packed_runs_repeat_and_leave_constants_alone(op: str) -> None:
    """Buffers and the in-place cell state are per run: the second run repeats the first exactly."""
    inputs = make_inputs(
        op,
        np.random.default_rng(3),
        seq=6,
        batch=3,
        input_size=4,
        hidden=5,
        dirs=2,
        layout=0,
        dtype=np.float32,
        bias=True,
        initial=True,
        peepholes=op == "LSTM",
    )
    constants = ("W", "R", "B", "initial_h", "initial_c", "P")
    num_outputs = 3 if op == "LSTM" else 2
    model = rnn_model(op, inputs, num_outputs, constants=constants, direction="bidirectional")
    session = InferenceSession(model.SerializeToString())
    first = session.run(None, feeds(inputs, constants))
    second = session.run(None, feeds(inputs, constants))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    expected = ReferenceEvaluator(model).run(None, feeds(inputs, constants))
    for want, have in zip(expected, second):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(ORT is None, reason="needs the real onnxruntime")
def test_lstm_exp_form_saturates_without_nan() -> None:
    """Pre-activations far beyond exp's float32 range: sigmoid -> 0 / 1 and tanh -> -1 / 1, as onnxruntime."""
    inputs = make_inputs(
        "LSTM",
        np.random.default_rng(4),
        seq=5,
        batch=4,
        input_size=3,
        hidden=6,
        dirs=1,
        layout=0,
        dtype=np.float32,
        bias=True,
        initial=True,
        peepholes=False,
    )
    inputs[0] = inputs[0] * 1e3  # |W x| reaches ~1e3: exp(-x) and exp(-2x) overflow to inf
    constants = ("W", "R", "B")
    model = rnn_model("LSTM", inputs, 3, opset=14, constants=constants, hidden_size=6)
    got = InferenceSession(model.SerializeToString()).run(None, feeds(inputs, constants))
    session = ORT.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for want, have in zip(session.run(None, feeds(inputs, constants)), got):
        assert np.isfinite(have).all()
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-5)


def test_packed_half_precision_weights() -> None:
    """float16 constants are packed as float32 (the compute dtype) and the outputs cast back."""
    inputs = make_inputs(
        "LSTM",
        np.random.default_rng(5),
        seq=4,
        batch=2,
        input_size=3,
        hidden=4,
        dirs=1,
        layout=0,
        dtype=np.float16,
        bias=True,
        initial=False,
        peepholes=False,
    )
    constants = ("W", "R", "B")
    model = rnn_model("LSTM", inputs, 3, opset=14, constants=constants)
    assert packed_steps(model) == 1
    got = InferenceSession(model.SerializeToString()).run(None, feeds(inputs, constants))
    wide = [v.astype(np.float32) if v is not None else None for v in inputs]
    want = ReferenceEvaluator(rnn_model("LSTM", wide, 3, opset=14)).run(None, feeds(wide))
    for w, h in zip(want, got):
        assert h.dtype == np.float16
        np.testing.assert_allclose(h.astype(np.float32), w, atol=3e-3)


@pytest.mark.parametrize(
    ("gates", "directions", "order", "scale", "dtype"),
    [
        (4, 1, (0, 2, 3, 1), (-1.0, -1.0, -2.0, -1.0), np.float32),  # the LSTM's exp form
        (4, 2, (3, 1, 0, 2), None, np.float32),
        (3, 2, None, None, np.float64),  # GRU-like
        (1, 1, None, (0.5,), np.float16),  # half precision packs through float32
    ],
)
def test_packed_blocks_are_the_reordered_scaled_transposed_weights(
    gates: int, directions: int, order: tuple[int, ...] | None, scale: tuple[float, ...] | None, dtype: type
) -> None:
    from onnxforge.runtime.kernels._rnn_cell import Packed  # noqa: PLC0415

    rng = np.random.default_rng(23)
    hidden, inputs = 5, 7
    w = rng.standard_normal((directions, gates * hidden, inputs)).astype(dtype)
    r = rng.standard_normal((directions, gates * hidden, hidden)).astype(dtype)
    compute = np.float64 if dtype == np.float64 else np.float32
    packed = Packed(w, r, None, gates, compute, directions, hidden, gate_order=order, gate_scale=scale)
    picked = list(order) if order is not None else list(range(gates))
    factors = np.asarray(scale if scale is not None else [1.0] * gates, dtype=compute)

    def arranged(x: np.ndarray) -> np.ndarray:
        blocks = x.astype(compute).reshape(directions, gates, hidden, -1)[:, picked]
        return blocks * factors[None, :, None, None] if scale is not None else blocks

    want_w = arranged(w).reshape(directions * gates * hidden, inputs).T
    assert packed.w_t.dtype == compute and packed.w_t.flags.c_contiguous
    np.testing.assert_array_equal(packed.w_t, want_w)
    for d in range(directions):
        assert packed.r_t[d].flags.c_contiguous and packed.r_t[d].dtype == compute
        np.testing.assert_array_equal(packed.r_t[d], arranged(r)[d].transpose(0, 2, 1))
