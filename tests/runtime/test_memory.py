"""Memory held by a built session: the parsed protobuf (a copy of every weight) is let go, and the values
stay right after that, in the optimized plan, the unoptimized one, and the fallback for fed initializers."""

from __future__ import annotations

import gc
import uuid
import weakref
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge import GraphOptimizationLevel, InferenceSession, SessionOptions
from tests.runtime.conftest import make_model

_LEVELS = [GraphOptimizationLevel.ORT_ENABLE_ALL, GraphOptimizationLevel.ORT_DISABLE_ALL]


def _conv_model(tag: str, weight_as_input: bool) -> onnx.ModelProto:
    """y = Relu(Conv(x, W, B) * c), c a Constant node, and a string Constant z; tensor names end in ``tag``."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((32, 16, 3, 3)).astype(np.float32), f"W_{tag}")
    b = numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), f"B_{tag}")
    scale = numpy_helper.from_array(np.full((1, 32, 1, 1), 0.5, np.float32), f"C_{tag}")
    nodes = [
        helper.make_node("Constant", [], ["c"], value=scale),
        helper.make_node("Conv", ["x", w.name, b.name], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["conv", "c"], ["scaled"]),
        helper.make_node("Relu", ["scaled"], ["y"]),
        helper.make_node(
            "Constant", [], ["label"], value=helper.make_tensor("s", TensorProto.STRING, [2], [b"a", b"bc"])
        ),
        helper.make_node("Identity", ["label"], ["z"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])]
    if weight_as_input:  # IR 3 style: the weight is an overridable initializer
        inputs.append(helper.make_tensor_value_info(w.name, TensorProto.FLOAT, [32, 16, 3, 3]))
    outputs = [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 8, 8]),
        helper.make_tensor_value_info("z", TensorProto.STRING, [2]),
    ]
    return make_model(nodes, inputs, outputs, [w, b], opset=17, ir_version=8)


def _saved(model: onnx.ModelProto, tmp_path: Path) -> str:
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return str(path)


def _protobuf_holders(name: str) -> list[object]:
    """Live protobuf-backed objects that hold the tensor ``name``: parsed models, tensor messages, onnx-ir views."""
    gc.collect()
    found: list[object] = []
    for obj in gc.get_objects():
        if isinstance(obj, ir.serde.TensorProtoTensor) and obj.name == name:
            found.append(obj)
        elif isinstance(obj, onnx.TensorProto) and obj.name == name:
            found.append(obj)
        elif isinstance(obj, onnx.ModelProto) and any(t.name == name for t in obj.graph.initializer):
            found.append(obj)
    return found


def _ort(path: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("weight_as_input", [False, True])
@pytest.mark.parametrize("level", _LEVELS)
def test_session_lets_the_parsed_protobuf_go(
    tmp_path: Path, level: GraphOptimizationLevel, weight_as_input: bool
) -> None:
    tag = uuid.uuid4().hex
    path = _saved(_conv_model(tag, weight_as_input), tmp_path)
    assert _protobuf_holders(f"W_{tag}") == []
    options = SessionOptions()
    options.graph_optimization_level = level
    sess = InferenceSession(path, options)
    # Every weight would be held twice (the protobuf's bytes and the plan's array) if anything kept it.
    assert _protobuf_holders(f"W_{tag}") == []
    assert _protobuf_holders(f"C_{tag}") == []
    x = np.random.default_rng(1).standard_normal((1, 16, 8, 8)).astype(np.float32)
    y, z = sess.run(None, {"x": x})
    want_y, want_z = _ort(path, {"x": x})
    np.testing.assert_allclose(y, want_y, rtol=1e-3, atol=1e-4)
    assert z.tolist() == list(want_z)
    meta = sess.get_modelmeta()
    assert meta.graph_name == "test_graph"
    assert [a.name for a in sess.get_inputs()] == ["x"]
    assert [(a.name, a.type) for a in sess.get_outputs()] == [("y", "tensor(float)"), ("z", "tensor(string)")]


def test_fed_initializer_still_runs_the_fallback_plan(tmp_path: Path) -> None:
    """The unoptimized fallback is built from the model after the protobuf went: it must still see every weight."""
    tag = uuid.uuid4().hex
    path = _saved(_conv_model(tag, weight_as_input=True), tmp_path)
    sess = InferenceSession(path)
    assert [a.name for a in sess.get_overridable_initializers()] == [f"W_{tag}"]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    default_y, _ = sess.run(None, {"x": x})
    fed_y, _ = sess.run(None, {"x": x, f"W_{tag}": w})
    np.testing.assert_allclose(fed_y, _ort(path, {"x": x, f"W_{tag}": w})[0], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(default_y, _ort(path, {"x": x})[0], rtol=1e-3, atol=1e-4)
    assert not np.allclose(fed_y, default_y)


def test_a_dropped_session_frees_its_weights_without_the_cyclic_collector(tmp_path: Path) -> None:
    """onnx-ir graphs are cyclic: a session that kept its model would hold every weight until a full collection."""
    tag = uuid.uuid4().hex
    sess = InferenceSession(_saved(_conv_model(tag, weight_as_input=False), tmp_path))
    weights = [weakref.ref(array) for array in sess._plan._template if isinstance(array, np.ndarray)]
    assert weights, "the plan holds no constant array to watch"
    gc.disable()
    try:
        del sess
        alive = sum(ref() is not None for ref in weights)
    finally:
        gc.enable()
    assert alive == 0, f"{alive} of {len(weights)} weight arrays outlived their session"


def test_optimized_model_file_keeps_every_weight(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    path = _saved(_conv_model(tag, weight_as_input=False), tmp_path)
    options = SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    InferenceSession(path, options)
    x = np.random.default_rng(3).standard_normal((1, 16, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(
        _ort(options.optimized_model_filepath, {"x": x})[0], _ort(path, {"x": x})[0], rtol=1e-5, atol=1e-6
    )
