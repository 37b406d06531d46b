"""check_types: onnx's strict inference on a light view of the model, sorted only when the file's order fails."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from onnxforge._errors import InvalidGraph
from onnxforge.runtime.typecheck import check_types

F = TensorProto.FLOAT


def _chain(reverse: bool, second_input_type: int = F) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Neg", ["x"], ["a"], name="neg"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Add", ["b", "z"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        list(reversed(nodes)) if reverse else nodes,
        "chain",
        [helper.make_tensor_value_info("x", F, [2, 3]), helper.make_tensor_value_info("z", second_input_type, [2, 3])],
        [helper.make_tensor_value_info("y", F, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _inferred_dims(inferred: onnx.ModelProto) -> dict[str, list[int]]:
    return {
        info.name: [d.dim_value for d in info.type.tensor_type.shape.dim]
        for info in list(inferred.graph.value_info) + list(inferred.graph.output)
    }


@pytest.mark.parametrize("reverse", [False, True])
def test_sorted_and_unsorted_graphs_get_every_shape(reverse: bool) -> None:
    model = _chain(reverse)
    inferred = check_types(model, "chain.onnx")
    assert inferred is not None
    assert _inferred_dims(inferred) == {"a": [2, 3], "b": [2, 3], "y": [2, 3]}
    # The caller's model is left in its own order.
    assert [node.name for node in model.graph.node] == (["add", "relu", "neg"] if reverse else ["neg", "relu", "add"])


@pytest.mark.parametrize("reverse", [False, True])
def test_a_type_error_is_reported_whatever_the_order(reverse: bool) -> None:
    model = _chain(reverse, second_input_type=TensorProto.INT64)  # Add of float and int64
    with pytest.raises(InvalidGraph, match=r"chain\.onnx.*type or shape inference rejects the graph.*Add"):
        check_types(model, "chain.onnx")
