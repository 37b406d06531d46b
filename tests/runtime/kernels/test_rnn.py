"""RNN / GRU / LSTM against onnx's reference evaluator and onnxruntime on generated sizes and attributes.

The reference evaluator covers direction, layout, biases, initial states, peepholes and linear_before_reset
but ignores sequence_lens, clip, activations and input_forget; those are checked against onnxruntime
(which in turn rejects layout=1, covered by a layout-equivalence property instead). Weights given as
initializers (the path ``prepare`` packs once per node) are covered in test_rnn_packed.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument

try:
    import onnxruntime as _ort

    # A test elsewhere may install onnxforge's onnxruntime shim; comparing against ourselves proves nothing.
    ORT: Any = _ort if _ort.__name__ == "onnxruntime" else None
except ImportError:  # pragma: no cover - onnxruntime is a dev dependency
    ORT = None

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
INPUT_NAMES = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
ACTIVATIONS = {
    # name -> (takes alpha, takes beta); kept to functions that stay bounded enough over a few steps.
    "Sigmoid": (False, False),
    "Tanh": (False, False),
    "Relu": (False, False),
    "HardSigmoid": (True, True),
    "LeakyRelu": (True, False),
    "ThresholdedRelu": (True, False),
    "ScaledTanh": (True, True),
    "Affine": (True, True),
    "Softsign": (False, False),
}


def rnn_model(
    op: str,
    inputs: list[np.ndarray | None],
    num_outputs: int,
    opset: int = 22,
    constants: tuple[str, ...] = (),
    **attrs: Any,
) -> onnx.ModelProto:
    """One-node model; the inputs named in ``constants`` are initializers, the others graph inputs."""
    names = [name if value is not None else "" for name, value in zip(INPUT_NAMES, inputs)]
    while names and not names[-1]:
        names.pop()
    outputs = ["Y", "Y_h", "Y_c"][:num_outputs]
    node = helper.make_node(op, names, outputs, **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
        for name, value in zip(INPUT_NAMES, inputs)
        if value is not None and name not in constants
    ]
    initializers = [
        numpy_helper.from_array(value, name)
        for name, value in zip(INPUT_NAMES, inputs)
        if value is not None and name in constants
    ]
    elem = helper.np_dtype_to_tensor_dtype(inputs[0].dtype)
    graph_outputs = [helper.make_tensor_value_info(name, elem, None) for name in outputs]
    graph = helper.make_graph([node], "rnn", graph_inputs, graph_outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def feeds(inputs: list[np.ndarray | None], constants: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    return {name: value for name, value in zip(INPUT_NAMES, inputs) if value is not None and name not in constants}


def make_inputs(
    op: str,
    rng: np.random.Generator,
    *,
    seq: int,
    batch: int,
    input_size: int,
    hidden: int,
    dirs: int,
    layout: int,
    dtype: type,
    bias: bool,
    initial: bool,
    peepholes: bool,
    lengths: np.ndarray | None = None,
) -> list[np.ndarray | None]:
    gates = GATES[op]

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.5).astype(dtype)

    x = rand(batch, seq, input_size) if layout else rand(seq, batch, input_size)
    state_shape = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    inputs: list[np.ndarray | None] = [
        x,
        rand(dirs, gates * hidden, input_size),
        rand(dirs, gates * hidden, hidden),
        rand(dirs, 2 * gates * hidden) if bias else None,
        lengths,
        rand(*state_shape) if initial else None,
    ]
    if op == "LSTM":
        inputs += [rand(*state_shape) if initial else None, rand(dirs, 3 * hidden) if peepholes else None]
    return inputs


@st.composite
def reference_cases(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(GATES)))
    direction = draw(st.sampled_from(["forward", "reverse", "bidirectional"]))
    return {
        "op": op,
        "direction": direction,
        "seq": draw(st.integers(1, 5)),
        "batch": draw(st.integers(1, 4)),
        "input_size": draw(st.integers(1, 5)),
        "hidden": draw(st.integers(1, 5)),
        "dirs": 2 if direction == "bidirectional" else 1,
        "layout": draw(st.integers(0, 1)),
        "dtype": draw(st.sampled_from([np.float32, np.float64])),
        "bias": draw(st.booleans()),
        "initial": draw(st.booleans()),
        "peepholes": draw(st.booleans()),
        "linear_before_reset": draw(st.integers(0, 1)),
        "num_outputs": draw(st.integers(1, 3 if op == "LSTM" else 2)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@settings(max_examples=15, deadline=None)
@given(reference_cases())
def test_matches_reference_evaluator(case: dict[str, Any]) -> None:
    op = case["op"]
    sizes = {k: case[k] for k in ("seq", "batch", "input_size", "hidden", "dirs", "layout", "dtype")}
    inputs = make_inputs(
        op,
        np.random.default_rng(case["seed"]),
        bias=case["bias"],
        initial=case["initial"],
        peepholes=case["peepholes"],
        **sizes,
    )
    attrs: dict[str, Any] = {"hidden_size": case["hidden"], "direction": case["direction"], "layout": case["layout"]}
    if op == "GRU":
        attrs["linear_before_reset"] = case["linear_before_reset"]
    model = rnn_model(op, inputs, case["num_outputs"], **attrs)
    expected = ReferenceEvaluator(model).run(None, feeds(inputs))
    got = InferenceSession(model.SerializeToString()).run(None, feeds(inputs))
    assert len(got) == case["num_outputs"]
    tolerance = 1e-5 if case["dtype"] == np.float32 else 1e-12
    for want, have in zip(expected, got):
        assert isinstance(have, np.ndarray) and have.dtype == case["dtype"]
        assert have.shape == want.shape
        np.testing.assert_allclose(have, want, rtol=tolerance, atol=tolerance)


@st.composite
def runtime_cases(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(GATES)))
    direction = draw(st.sampled_from(["forward", "reverse", "bidirectional"]))
    dirs = 2 if direction == "bidirectional" else 1
    seq, batch = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    names = draw(
        st.lists(
            st.sampled_from(sorted(ACTIVATIONS)),
            min_size=dirs * {"RNN": 1, "GRU": 2, "LSTM": 3}[op],
            max_size=dirs * {"RNN": 1, "GRU": 2, "LSTM": 3}[op],
        )
    )
    positive = st.floats(0.1, 1.5)
    return {
        "op": op,
        "direction": direction,
        "dirs": dirs,
        "seq": seq,
        "batch": batch,
        "lengths": draw(st.none() | st.lists(st.integers(0, seq), min_size=batch, max_size=batch)),
        "clip": draw(st.none() | positive),
        "activations": draw(st.none() | st.just(names)),
        "alphas": [draw(positive) for name in names if ACTIVATIONS[name][0]],
        "betas": [draw(positive) for name in names if ACTIVATIONS[name][1]],
        "input_forget": draw(st.integers(0, 1)),
        "linear_before_reset": draw(st.integers(0, 1)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def case_inputs(case: dict[str, Any], hidden: int, input_size: int, peepholes: bool) -> dict[str, np.ndarray]:
    """The inputs of a :func:`runtime_cases` case, drawn from its seed."""
    lengths = None if case["lengths"] is None else np.array(case["lengths"], dtype=np.int32)
    return make_inputs(
        case["op"],
        np.random.default_rng(case["seed"]),
        seq=case["seq"],
        batch=case["batch"],
        input_size=input_size,
        hidden=hidden,
        dirs=case["dirs"],
        layout=0,
        dtype=np.float32,
        bias=True,
        initial=True,
        peepholes=peepholes,
        lengths=lengths,
    )


def case_attributes(case: dict[str, Any], hidden: int) -> dict[str, Any]:
    """The node attributes of a :func:`runtime_cases` case."""
    attrs: dict[str, Any] = {"hidden_size": hidden, "direction": case["direction"]}
    if case["clip"] is not None:
        attrs["clip"] = case["clip"]
    if case["activations"] is not None:
        attrs["activations"] = case["activations"]
        if case["alphas"]:
            attrs["activation_alpha"] = case["alphas"]
        if case["betas"]:
            attrs["activation_beta"] = case["betas"]
    if case["op"] == "LSTM":
        attrs["input_forget"] = case["input_forget"]
    if case["op"] == "GRU":
        attrs["linear_before_reset"] = case["linear_before_reset"]
    return attrs


@pytest.mark.skipif(ORT is None, reason="needs the real onnxruntime")
@settings(max_examples=15, deadline=None)
@given(runtime_cases())
def test_matches_onnxruntime(case: dict[str, Any]) -> None:
    op, hidden = case["op"], 3
    inputs = case_inputs(case, hidden, input_size=2, peepholes=True)
    attrs = case_attributes(case, hidden)
    model = rnn_model(op, inputs, 3 if op == "LSTM" else 2, opset=14, **attrs)
    expected = ORT.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feeds(inputs)
    )
    got = InferenceSession(model.SerializeToString()).run(None, feeds(inputs))
    for want, have in zip(expected, got):
        assert have.dtype == np.float32 and have.shape == want.shape
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    op=st.sampled_from(sorted(GATES)),
    direction=st.sampled_from(["forward", "reverse", "bidirectional"]),
    lengths=st.lists(st.integers(0, 4), min_size=3, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_layout_1_is_layout_0_transposed(op: str, direction: str, lengths: list[int], seed: int) -> None:
    dirs = 2 if direction == "bidirectional" else 1
    inputs = make_inputs(
        op,
        np.random.default_rng(seed),
        seq=4,
        batch=3,
        input_size=2,
        hidden=2,
        dirs=dirs,
        layout=0,
        dtype=np.float32,
        bias=True,
        initial=True,
        peepholes=True,
        lengths=np.array(lengths, dtype=np.int32),
    )
    batchwise = [None if v is None else v for v in inputs]
    batchwise[0] = inputs[0].transpose(1, 0, 2)
    for index in (5, 6):  # initial_h, initial_c
        if index < len(inputs) and inputs[index] is not None:
            batchwise[index] = inputs[index].transpose(1, 0, 2)
    num_outputs = 3 if op == "LSTM" else 2
    seq_major = InferenceSession(rnn_model(op, inputs, num_outputs, direction=direction).SerializeToString())
    batch_major = InferenceSession(
        rnn_model(op, batchwise, num_outputs, direction=direction, layout=1).SerializeToString()
    )
    y, *states = seq_major.run(None, feeds(inputs))
    y_b, *states_b = batch_major.run(None, feeds(batchwise))
    np.testing.assert_allclose(y_b, y.transpose(2, 0, 1, 3), rtol=1e-6)
    for state, state_b in zip(states, states_b):
        np.testing.assert_allclose(state_b, state.transpose(1, 0, 2), rtol=1e-6)


def test_sequence_lens_semantics() -> None:
    """Reverse walks each entry's own valid steps; Y is zero past them; Y_h is the last valid state."""
    x = np.arange(1, 7, dtype=np.float32).reshape(3, 2, 1)  # seq 3, batch 2, one feature
    ones = np.ones((1, 1, 1), dtype=np.float32)
    inputs: list[np.ndarray | None] = [x, ones, ones, None, np.array([3, 1], dtype=np.int32)]
    # Identity-like RNN: H_t = X_t + H_{t-1}, so H is a running sum.
    model = rnn_model(
        "RNN", inputs, 2, direction="reverse", activations=["Affine"], activation_alpha=[1.0], activation_beta=[0.0]
    )
    y, y_h = InferenceSession(model.SerializeToString()).run(None, feeds(inputs))
    # batch 0 runs t = 2, 1, 0 over 5, 3, 1; batch 1 runs only t = 0 (x = 2).
    np.testing.assert_array_equal(y[:, 0, :, 0], [[9, 2], [8, 0], [5, 0]])
    np.testing.assert_array_equal(y_h[0, :, 0], [9, 2])


def test_only_y_h_requested_and_half_precision() -> None:
    rng = np.random.default_rng(0)
    inputs = make_inputs(
        "LSTM",
        rng,
        seq=3,
        batch=2,
        input_size=2,
        hidden=3,
        dirs=1,
        layout=0,
        dtype=np.float16,
        bias=True,
        initial=False,
        peepholes=False,
    )
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["", "Y_h"], hidden_size=3)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT16, v.shape) for n, v in zip(INPUT_NAMES, inputs[:4])],
        [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT16, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    (y_h,) = InferenceSession(model.SerializeToString()).run(None, feeds(inputs[:4]))
    full = InferenceSession(rnn_model("LSTM", [v.astype(np.float32) for v in inputs[:4]], 2).SerializeToString())
    _, want = full.run(None, {k: v.astype(np.float32) for k, v in feeds(inputs[:4]).items()})
    assert y_h.dtype == np.float16 and y_h.shape == (1, 2, 3)
    np.testing.assert_allclose(y_h.astype(np.float32), want, atol=2e-3)


@pytest.mark.parametrize(("op", "opset"), [("RNN", 7), ("GRU", 3), ("GRU", 7), ("LSTM", 7)])
def test_older_opsets(op: str, opset: int) -> None:
    inputs = make_inputs(
        op,
        np.random.default_rng(1),
        seq=3,
        batch=2,
        input_size=2,
        hidden=2,
        dirs=2,
        layout=0,
        dtype=np.float32,
        bias=True,
        initial=True,
        peepholes=False,
    )
    attrs = {"linear_before_reset": 1} if op == "GRU" else {}
    model = rnn_model(op, inputs, 2, opset=opset, direction="bidirectional", **attrs)
    expected = ReferenceEvaluator(model).run(None, feeds(inputs))
    got = InferenceSession(model.SerializeToString()).run(None, feeds(inputs))
    for want, have in zip(expected, got):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6)


def test_bad_sequence_lens_is_invalid_argument() -> None:
    inputs = make_inputs(
        "GRU",
        np.random.default_rng(2),
        seq=2,
        batch=2,
        input_size=2,
        hidden=2,
        dirs=1,
        layout=0,
        dtype=np.float32,
        bias=False,
        initial=False,
        peepholes=False,
        lengths=np.array([3, 1], dtype=np.int32),
    )
    session = InferenceSession(rnn_model("GRU", inputs, 2).SerializeToString())
    with pytest.raises(InvalidArgument, match="sequence_lens"):
        session.run(None, feeds(inputs))
