"""PlanBuilder: what it reports about a malformed graph, and which kernel each node gets."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxforge._errors import InvalidGraph
from onnxforge.runtime.plan_builder import PlanBuilder


def _graph_reading_an_orphan_value() -> ir.Graph:
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2]))
    orphan = ir.Value(name="orphan", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2]))
    add = ir.Node("", "Add", [x, orphan], name="the_add", num_outputs=1)
    add.outputs[0].name = "y"
    return ir.Graph([x], add.outputs, nodes=[add], name="g", opset_imports={"": 17})


def test_a_node_reading_a_value_nothing_produces_is_named_in_the_error() -> None:
    graph = _graph_reading_an_orphan_value()
    with pytest.raises(InvalidGraph, match=r"node 'the_add' \(ai\.onnx::Add, opset 17\) reads 'orphan'"):
        PlanBuilder({"": 17}).build(graph)


def test_a_graph_output_nothing_produces_is_named_in_the_error() -> None:
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2]))
    missing = ir.Value(name="missing", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2]))
    graph = ir.Graph([x], [missing], nodes=[], name="g", opset_imports={"": 17})
    with pytest.raises(InvalidGraph, match=r"graph output 'missing' reads 'missing'"):
        PlanBuilder({"": 17}).build(graph)


@pytest.mark.parametrize(
    ("opset", "bounds", "want"),
    [(6, {"min": 0.25, "max": 0.75}, [0.25, 0.5, 0.75]), (13, {}, [0.0, 0.5, 1.0])],
)
def test_each_node_gets_its_opsets_kernel_and_repeated_ops_share_it(
    opset: int, bounds: dict[str, float], want: list[float]
) -> None:
    """Clip-6 takes its bounds as attributes, Clip-13 as (here omitted) inputs."""
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([3]))
    first = ir.Node("", "Relu", [x], name="r1", num_outputs=1)
    attributes = [ir.AttrFloat32(name, value) for name, value in bounds.items()]
    second = ir.Node("", "Clip", [first.outputs[0]], attributes=attributes, name="c", num_outputs=1)
    third = ir.Node("", "Relu", [second.outputs[0]], name="r2", num_outputs=1)
    for index, node in enumerate((first, second, third)):
        node.outputs[0].name = f"v{index}"
    graph = ir.Graph([x], third.outputs, nodes=[first, second, third], name="g", opset_imports={"": opset})
    for optimize in (True, False):
        plan = PlanBuilder({"": opset}, optimize=optimize).build(graph)
        (got,) = plan.run([np.array([-1.0, 0.5, 1.0], np.float32)])
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, np.array(want, np.float32))
