"""is_sorted: producers before consumers, subgraph reads of outer values included."""

from __future__ import annotations

import onnx_ir as ir
from onnx import TensorProto, helper

from onnxforge.ir.order import is_sorted


def _graph(order: list[int]) -> ir.Graph:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="n0"),
        helper.make_node("Neg", ["a"], ["b"], name="n1"),
        helper.make_node("Abs", ["b"], ["y"], name="n2"),
    ]
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("x", "y")]
    graph = helper.make_graph([nodes[i] for i in order], "g", [info[0]], [info[1]])
    return ir.serde.deserialize_graph(graph)


def test_sorted_and_unsorted_chains() -> None:
    assert is_sorted(_graph([0, 1, 2]))
    assert not is_sorted(_graph([0, 2, 1]))


def test_a_subgraph_reading_a_later_outer_value_is_unsorted() -> None:
    branch = helper.make_graph(
        [helper.make_node("Identity", ["late"], ["out"])],
        "b",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])],
    )
    nodes = [
        helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch),
        helper.make_node("Relu", ["x"], ["late"]),
    ]
    inputs = [
        helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
    ]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    assert not is_sorted(ir.serde.deserialize_graph(graph))
