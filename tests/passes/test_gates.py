"""The pipeline's skip rules (_gates, the change tracker): a skipped pass must be one that had nothing to do."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import helper

from onnxforge.passes import _gates
from onnxforge.passes.pipeline import run_passes

from .helpers import F, assert_same_outputs, init, make_model, ops, rand, tensor_info


def _chain(order: list[int]) -> ir.Model:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="n0"),
        helper.make_node("Neg", ["a"], ["b"], name="n1"),
        helper.make_node("Abs", ["b"], ["y"], name="n2"),
    ]
    proto = make_model([nodes[i] for i in order], [tensor_info("x", F, [3])], [tensor_info("y", F, [3])])
    return ir.serde.deserialize_model(proto)


def test_is_sorted_sees_a_consumer_before_its_producer() -> None:
    assert _gates.is_sorted(_chain([0, 1, 2]))
    assert not _gates.is_sorted(_chain([0, 2, 1]))


def test_is_sorted_sees_a_subgraph_reading_a_later_outer_value() -> None:
    branch = helper.make_graph([helper.make_node("Identity", ["late"], ["out"])], "b", [], [tensor_info("out", F, [3])])
    nodes = [
        helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch),
        helper.make_node("Relu", ["x"], ["late"]),
    ]
    proto = make_model(nodes, [tensor_info("x", F, [3]), tensor_info("cond", 9, [])], [tensor_info("y", F, [3])])
    model = ir.serde.deserialize_model(proto)
    assert not _gates.is_sorted(model)
    model.graph.sort()
    assert _gates.is_sorted(model)


def test_op_types_and_nodes_of_walk_subgraphs() -> None:
    branch = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["out"])], "b", [], [tensor_info("out", F, [3])])
    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)]
    proto = make_model(nodes, [tensor_info("x", F, [3]), tensor_info("cond", 9, [])], [tensor_info("y", F, [3])])
    model = ir.serde.deserialize_model(proto)
    assert _gates.op_types(model) == {"If", "Sigmoid"}
    assert [n.op_type for n in _gates.nodes_of(model.graph)] == [
        n.op_type for n in ir.traversal.RecursiveGraphIterator(model.graph)
    ]


def _nested_ifs() -> ir.Model:
    """An If whose branches hold another If, with an initializer and named values at every level."""
    inner = helper.make_graph(
        [helper.make_node("Add", ["x", "k_inner"], ["inner_out"], name="inner_add")],
        "inner",
        [],
        [tensor_info("inner_out", F, [3])],
        [init("k_inner", np.ones(3, dtype=np.float32))],
    )
    outer = helper.make_graph(
        [
            helper.make_node("Neg", ["x"], ["neg"], name="neg"),
            helper.make_node("If", ["cond"], ["branch_out"], then_branch=inner, else_branch=inner, name="inner_if"),
        ],
        "outer",
        [],
        [tensor_info("branch_out", F, [3])],
    )
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("If", ["cond"], ["y"], then_branch=outer, else_branch=outer, name="outer_if"),
    ]
    proto = make_model(nodes, [tensor_info("x", F, [3]), tensor_info("cond", 9, [])], [tensor_info("y", F, [3])])
    return ir.serde.deserialize_model(proto)


def test_nodes_of_and_names_walk_nested_subgraphs_as_onnx_ir_does() -> None:
    from onnxforge.passes._util import Names

    model = _nested_ifs()
    graphs: list[ir.Graph] = []
    assert _gates.nodes_of(model.graph, graphs=graphs) == list(ir.traversal.RecursiveGraphIterator(model.graph))
    assert graphs == list(model.graph.subgraphs())
    expected: set[str] = set()
    for graph in [model.graph, *model.graph.subgraphs()]:
        expected.update(graph.initializers)
        expected.update(v.name for v in graph.inputs if v.name)
        for node in graph:
            expected.update(v.name for v in node.outputs if v.name)
    assert Names(model).taken == expected and {"k_inner", "inner_out", "neg", "r"} <= expected


def test_may_share_subexpressions_needs_two_nodes_on_the_same_inputs() -> None:
    assert not _gates.may_share_subexpressions(_chain([0, 1, 2]))
    proto = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Relu", ["x"], ["b"]),
            helper.make_node("Add", ["a", "b"], ["y"]),
        ],
        [tensor_info("x", F, [3])],
        [tensor_info("y", F, [3])],
    )
    model = ir.serde.deserialize_model(proto)
    assert _gates.may_share_subexpressions(model)
    result = run_passes(model)
    assert result.changed.get("cse") == 1 and ops(model)["Relu"] == 1


def test_a_fusion_enabled_by_another_one_still_fires() -> None:
    """MatMul + Add becomes Gemm in the loop; only then can Gemm + BatchNormalization fuse (op types recomputed)."""
    rng = np.random.default_rng(0)
    proto = make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Add", ["m", "b"], ["g"]),
            helper.make_node("BatchNormalization", ["g", "s", "c", "mean", "var"], ["y"]),
        ],
        [tensor_info("x", F, [2, 4])],
        [tensor_info("y", F, [2, 3])],
        [
            init("w", rng.standard_normal((4, 3)).astype(np.float32)),
            init("b", rng.standard_normal(3).astype(np.float32)),
            init("s", rng.random(3).astype(np.float32) + 0.5),
            init("c", rng.standard_normal(3).astype(np.float32)),
            init("mean", rng.standard_normal(3).astype(np.float32)),
            init("var", rng.random(3).astype(np.float32) + 0.5),
        ],
    )
    model = ir.serde.deserialize_model(proto)
    result = run_passes(model)
    assert "matmul_add_to_gemm" in result.changed and "fuse_gemm_bn" in result.changed
    assert ops(model) == {"Gemm": 1}
    assert_same_outputs(proto, model, {"x": rand(2, 4)}, rtol=1e-4, atol=1e-4)


def test_passes_that_found_nothing_are_not_run_again(monkeypatch) -> None:
    """A pass that came back unmodified is skipped until the model changes (the post stage's DCE and sort)."""
    from onnxforge.passes import pipeline

    calls: list[str] = []
    original = pipeline._run_one

    def counting(name: str, pass_: ir.passes.PassBase, model: ir.Model) -> bool:
        calls.append(name)
        return original(name, pass_, model)

    monkeypatch.setattr(pipeline, "_run_one", counting)
    model = _chain([0, 1, 2])
    result = run_passes(model)
    assert result.rounds == 1 and result.changed == {}
    assert calls.count("remove_unused") == 1  # the loop's; the post stage's would find the same nothing
    assert "topological_sort" not in calls  # already sorted
    assert "fuse_conv_bn" not in calls  # no Conv, no BatchNormalization


def test_a_gates_no_holds_until_the_model_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    real = _gates.is_sorted

    def counting(model: ir.Model) -> bool:
        calls.append(real(model))
        return calls[-1]

    monkeypatch.setattr(_gates, "is_sorted", counting)
    model = ir.serde.deserialize_model(
        make_model(
            [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Neg", ["h"], ["y"])],
            [tensor_info("x", F, [2])],
            [tensor_info("y", F, [2])],
        )
    )

    result = run_passes(model, shapes_inferred=True)  # as a session runs them: no annotation changes either

    assert not result.changed
    assert calls == [True]  # the pre stage's sort check; the post stage's is skipped on the unchanged model
