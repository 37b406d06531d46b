"""RemoveDeadCodePass gives exactly what onnx-ir's RemoveUnusedNodesPass gives, on graphs that exercise
every branch of its rule: dead chains, unread optional outputs, BatchNormalization's training_mode, trailing
missing inputs, subgraphs and unread initializers."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxforge.passes.dead_code import RemoveDeadCodePass
from tests.passes.helpers import F, init, make_model, tensor_info


def _dropout_and_dead_chain() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Dropout", ["x"], ["d", "mask"]),  # mask unread: an optional output to drop
        helper.make_node("Relu", ["d"], ["dead1"]),
        helper.make_node("Neg", ["dead1"], ["dead2"]),  # a dead chain, removed from its end
        helper.make_node("Clip", ["d", "lo", ""], ["y"]),  # a trailing missing input
    ]
    inits = [init("lo", np.float32(0)), init("unread", np.ones(3, np.float32))]
    return make_model(nodes, [tensor_info("x", F, [2, 3])], [tensor_info("y", F, [2, 3])], inits)


def _batchnorm() -> onnx.ModelProto:
    params = [init(n, np.ones(3, np.float32)) for n in ("s", "b", "m", "v")]
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], training_mode=0)]
    return make_model(nodes, [tensor_info("x", F, [2, 3, 4])], [tensor_info("y", F, [2, 3, 4])], params)


def _subgraph() -> onnx.ModelProto:
    branch = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["unread"]), helper.make_node("Neg", ["x"], ["out"])],
        "branch",
        [],
        [tensor_info("out", F, [2])],
    )
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch),
    ]
    return make_model(nodes, [tensor_info("x", F, [2])], [tensor_info("y", F, [2])], [init("zero", np.float32(0))])


@pytest.mark.parametrize("build", [_dropout_and_dead_chain, _batchnorm, _subgraph])
def test_same_result_as_onnx_ir(build) -> None:
    proto = build()
    ours, theirs = ir.serde.deserialize_model(proto), ir.serde.deserialize_model(proto)
    modified_ours = RemoveDeadCodePass()(ours).modified
    modified_theirs = RemoveUnusedNodesPass()(theirs).modified
    assert modified_ours == modified_theirs
    assert ir.serde.serialize_model(ours) == ir.serde.serialize_model(theirs)
