"""expand_functions: kernel-less function ops become their bodies, in the main graph and in subgraphs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxforge import InferenceSession
from onnxforge.runtime.expand import expand_functions

F = TensorProto.FLOAT


def _model(opset: int = 13) -> onnx.ModelProto:
    """MeanVarianceNormalization (a function op) in the main graph and in both branches of an If."""
    branches = {
        name: helper.make_graph(
            [helper.make_node("MeanVarianceNormalization", ["x"], [f"{name}_out"], axes=[0, 2, 3])],
            name,
            [],
            [helper.make_tensor_value_info(f"{name}_out", F, None)],
        )
        for name in ("then", "else")
    }
    graph = helper.make_graph(
        [
            helper.make_node("MeanVarianceNormalization", ["x"], ["m"]),
            helper.make_node("If", ["cond"], ["b"], then_branch=branches["then"], else_branch=branches["else"]),
            helper.make_node("Add", ["m", "b"], ["y"]),
        ],
        "mvn",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", F, [2, 3, 4, 5]),
        ],
        [helper.make_tensor_value_info("y", F, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _ops(graph: onnx.GraphProto) -> Counter[str]:
    found: Counter[str] = Counter(node.op_type for node in graph.node)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found.update(_ops(attr.g))
    return found


def test_every_kernelless_function_op_is_expanded_and_computes_the_same() -> None:
    model = _model(13)

    expanded = expand_functions(model, lambda domain, op, opset: op != "MeanVarianceNormalization")

    assert _ops(model.graph)["MeanVarianceNormalization"] == 3  # the caller's model is untouched
    ops = _ops(expanded.graph)
    assert "MeanVarianceNormalization" not in ops
    # Each of the three became the body (mean, variance, square root), substituted by onnx's inliner.
    assert ops["ReduceMean"] == 6 and ops["Sqrt"] == 3 and not expanded.functions
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    for cond in (True, False):
        feeds = {"cond": np.array(cond), "x": x}
        (want,) = InferenceSession(model).run(None, feeds)
        (got,) = InferenceSession(expanded).run(None, feeds)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_model_whose_ops_all_have_kernels_is_returned_as_is() -> None:
    model = _model()
    assert expand_functions(model, lambda domain, op, opset: True) is model


@pytest.mark.parametrize(("function_opset", "model_opset"), [(17, 17), (17, 18), (13, 17)])
def test_a_local_function_written_for_an_older_opset_is_inlined_and_runs(function_opset: int, model_opset: int) -> None:
    # onnx's inliner leaves such a call in place unless asked to convert the body (onnxruntime runs it).
    function = helper.make_function(
        "custom",
        "ClipAt",
        ["a"],
        ["b"],
        [helper.make_node("Relu", ["a"], ["b"])],
        [helper.make_opsetid("", function_opset)],
    )
    graph = helper.make_graph(
        [helper.make_node("ClipAt", ["x"], ["y"], domain="custom")],
        "g",
        [helper.make_tensor_value_info("x", F, [3])],
        [helper.make_tensor_value_info("y", F, [3])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", model_opset), helper.make_opsetid("custom", 1)],
        functions=[function],
    )

    expanded = expand_functions(model, lambda domain, op, opset: True)
    (y,) = InferenceSession(model.SerializeToString()).run(None, {"x": np.float32([-1.0, 0.5, 2.0])})

    assert [node.op_type for node in expanded.graph.node] == ["Relu"] and not expanded.functions
    np.testing.assert_array_equal(y, [0.0, 0.5, 2.0])
