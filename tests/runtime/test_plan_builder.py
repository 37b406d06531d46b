"""PlanBuilder: what it reports about a malformed graph, which kernel each node gets, deferred weight packing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge._errors import InvalidArgument, InvalidGraph
from onnxforge.runtime.fusion import NodeInfo, StepSpec
from onnxforge.runtime.plan_builder import PlanBuilder

RNG = np.random.default_rng(5)


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


def _pointwise_depthwise_pointwise(project_kernel_shape: list[int] | None, then: str = "Relu") -> ir.Graph:
    """A channels-last chain (see fusion_layout.py), whose last conv may declare a wrong kernel_shape."""
    c, hidden = 4, 8
    weights = {
        "w1": RNG.standard_normal((hidden, c, 1, 1)).astype(np.float32),
        "wd": RNG.standard_normal((hidden, 1, 3, 3)).astype(np.float32),
        "w2": RNG.standard_normal((c, hidden, 1, 1)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["e"], name="expand"),
        helper.make_node("Relu", ["e"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "wd"], ["d"], name="dw", group=hidden, pads=[1, 1, 1, 1]),
        helper.make_node(
            "Conv",
            ["d", "w2"],
            ["p"],
            name="project",
            **({"kernel_shape": project_kernel_shape} if project_kernel_shape else {}),
        ),
        helper.make_node(then, ["p"], ["y"], name="last"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return ir.serde.deserialize_graph(graph)


def test_a_channels_last_chain_gives_the_unfused_numbers() -> None:
    graph = _pointwise_depthwise_pointwise(None)
    x = RNG.standard_normal((2, 4, 9, 7)).astype(np.float32)
    (got,) = PlanBuilder({"": 17}).build(graph).run([x])
    (want,) = PlanBuilder({"": 17}, optimize=False).build(graph).run([x])
    assert got.shape == want.shape == (2, 4, 9, 7) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("optimize", [True, False])
def test_a_conv_whose_packing_a_fusion_skips_still_reports_its_bad_kernel_shape(optimize: bool) -> None:
    graph = _pointwise_depthwise_pointwise([3, 3])
    with pytest.raises(InvalidArgument, match=r"kernel_shape \[3, 3\] does not match the weight's spatial shape"):
        PlanBuilder({"": 17}, optimize=optimize).build(graph)


def test_a_bad_conv_is_reported_before_a_later_unknown_op() -> None:
    graph = _pointwise_depthwise_pointwise([3, 3], then="NoSuchOp")
    with pytest.raises(InvalidArgument, match="kernel_shape"):
        PlanBuilder({"": 17}).build(graph)


def test_a_deferred_call_is_made_once_on_first_read_and_never_if_replaced() -> None:
    made: list[int] = []

    def make() -> Callable[..., Any]:
        made.append(1)
        return np.negative

    info = NodeInfo("n", "Neg", "", 17)
    spec = StepSpec.deferred(make, info, [2], (3,))
    assert made == []
    assert spec.call is np.negative and spec.call is np.negative
    assert made == [1]
    replaced = StepSpec.deferred(make, info, [2], (3,))
    replaced.call = np.abs
    assert replaced.call is np.abs and made == [1]
