"""Helpers for the pass tests: build small models with onnx.helper, apply one pass, run both with onnxforge."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxforge import GraphOptimizationLevel, InferenceSession, SessionOptions
from onnxforge.passes.infer_shapes import InferShapesPass

F = TensorProto.FLOAT
I64 = TensorProto.INT64


def tensor_info(name: str, elem: int, shape: Sequence[int | str | None] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def init(name: str, array: Any) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    opset: int = 17,
    ir_version: int = 8,
) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def run(model: onnx.ModelProto | ir.Model, feeds: dict[str, np.ndarray]) -> list[Any]:
    """The model's outputs with the onnxforge engine and no session optimization."""
    proto = ir.serde.serialize_model(model) if isinstance(model, ir.Model) else model
    options = SessionOptions()
    options.graph_optimization_level = GraphOptimizationLevel.ORT_DISABLE_ALL
    return InferenceSession(proto, options).run(None, feeds)


def apply(model: onnx.ModelProto, *passes: ir.passes.PassBase, infer: bool = True) -> tuple[ir.Model, bool]:
    """``model`` as onnx-ir after shape inference (when asked) and ``passes``; and whether any changed it."""
    ir_model = ir.serde.deserialize_model(model)
    if infer:
        InferShapesPass()(ir_model)
    modified = False
    for pass_ in passes:
        modified = pass_(ir_model).modified or modified
    return ir_model, modified


def cleaned(model: ir.Model) -> ir.Model:
    """Dead code removed, as the pipeline does after every round."""
    RemoveUnusedNodesPass()(model)
    return model


def ops(model: ir.Model | onnx.ModelProto) -> Counter[str]:
    if isinstance(model, onnx.ModelProto):
        model = ir.serde.deserialize_model(model)
    return Counter(node.op_type for node in ir.traversal.RecursiveGraphIterator(model.graph))


def assert_same_outputs(
    before: onnx.ModelProto,
    after: ir.Model | onnx.ModelProto,
    feeds: dict[str, np.ndarray],
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> None:
    expected = run(before, feeds)
    got = run(after, feeds)
    assert len(expected) == len(got)
    for want, have in zip(expected, got):
        assert np.asarray(have).shape == np.asarray(want).shape
        assert np.asarray(have).dtype == np.asarray(want).dtype
        np.testing.assert_allclose(
            np.asarray(have, dtype=np.float64), np.asarray(want, dtype=np.float64), rtol=rtol, atol=atol
        )


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
