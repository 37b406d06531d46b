"""Small models built in code for the session and plan tests."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto] = (),  # type: ignore[assignment]
    opset: int = 17,
    ir_version: int = 8,
    **model_kwargs: object,
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test_graph", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **model_kwargs)
    model.ir_version = ir_version
    return model


@pytest.fixture
def affine_model() -> onnx.ModelProto:
    """y = relu(x @ W + b), x: [batch, 3] float32, W: [3, 2], b overridable (IR 3 style: also an input)."""
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2) / 10, "W")
    b = numpy_helper.from_array(np.array([0.5, -1.0], dtype=np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"], name="matmul"),
        helper.make_node("Add", ["xw", "b"], ["pre"], name="add"),
        helper.make_node("Relu", ["pre"], ["y"], name="relu"),
    ]
    model = make_model(
        nodes,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [2]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("xw", TensorProto.FLOAT, ["batch", 2]),
        ],
        [w, b],
        producer_name="onnxforge-tests",
        doc_string="affine test model",
        model_version=7,
    )
    model.graph.doc_string = "graph doc"
    model.domain = "ai.onnxforge.test"
    onnx.helper.set_model_props(model, {"author": "tests"})
    return model


def affine_reference(x: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    w = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
    bias = np.array([0.5, -1.0], dtype=np.float32) if b is None else b
    return np.maximum(x @ w + bias, 0)
