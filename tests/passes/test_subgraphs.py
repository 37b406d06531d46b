"""If with a constant condition becomes its branch; passes reach inside If/Loop bodies."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxforge.passes import simplify
from onnxforge.passes.fold_if import FoldConstantIfPass

from .helpers import F, apply, assert_same_outputs, init, make_model, ops, rand, run, tensor_info


def _branch(name: str, scale: float) -> onnx.GraphProto:
    """out = x * (scale + 1), with the constant written as a foldable Add inside the branch."""
    return helper.make_graph(
        [
            helper.make_node("Constant", [], [f"{name}_k"], value=helper.make_tensor("k", F, [], [scale])),
            helper.make_node("Add", [f"{name}_k", "one"], [f"{name}_k1"]),
            helper.make_node("Mul", ["x", f"{name}_k1"], [f"{name}_out"]),
        ],
        name,
        [],
        [tensor_info(f"{name}_out", F, [2, 3])],
    )


def _if_model(condition_input: bool) -> onnx.ModelProto:
    inputs = [tensor_info("x", F, [2, 3])]
    inits = [init("one", np.float32(1.0))]
    if condition_input:
        inputs.append(tensor_info("cond", TensorProto.BOOL, []))
    else:
        inits.append(init("cond", np.array(False)))
    return make_model(
        [
            helper.make_node("If", ["cond"], ["r"], then_branch=_branch("then", 2.0), else_branch=_branch("else", 4.0)),
            helper.make_node("Relu", ["r"], ["y"]),
        ],
        inputs,
        [tensor_info("y", F, [2, 3])],
        inits,
    )


def test_if_with_constant_condition_becomes_its_branch() -> None:
    model = _if_model(condition_input=False)
    result, modified = apply(model, FoldConstantIfPass())
    assert modified
    assert ops(result) == {"Constant": 1, "Add": 1, "Mul": 1, "Relu": 1}
    assert_same_outputs(model, result, {"x": rand(2, 3)}, rtol=0, atol=0)


def test_simplify_inlines_the_branch_and_folds_it() -> None:
    model = _if_model(condition_input=False)
    simplified, report = simplify(model, check_n=2)
    assert report.verified and "fold_if" in report.changed_passes
    assert ops(simplified) == {"Mul": 1, "Relu": 1}
    assert_same_outputs(model, simplified, {"x": rand(2, 3)}, rtol=0, atol=0)


def test_branches_of_a_runtime_if_fold_inside() -> None:
    model = _if_model(condition_input=True)
    simplified, report = simplify(
        model, check_n=0, inputs=[{"x": rand(2, 3), "cond": np.array(c)} for c in (True, False)]
    )
    assert report.verified
    assert ops(simplified) == {"If": 1, "Mul": 2, "Relu": 1}
    for c in (True, False):
        assert_same_outputs(model, simplified, {"x": rand(2, 3), "cond": np.array(c)}, rtol=0, atol=0)


def _loop_model() -> onnx.ModelProto:
    """Three iterations of acc = acc * (2 + 1) + shape(acc)[0] (foldable constants inside the body)."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Constant", [], ["two"], value=helper.make_tensor("t", F, [], [2.0])),
            helper.make_node("Add", ["two", "one"], ["three"]),
            helper.make_node("Shape", ["acc_in"], ["s"]),
            helper.make_node("Gather", ["s", "zero"], ["d0"], axis=0),
            helper.make_node("Cast", ["d0"], ["d0f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["acc_in", "three"], ["scaled"]),
            helper.make_node("Add", ["scaled", "d0f"], ["acc_out"]),
        ],
        "body",
        [
            tensor_info("i", TensorProto.INT64, []),
            tensor_info("cond_in", TensorProto.BOOL, []),
            tensor_info("acc_in", F, [2, 3]),
        ],
        [tensor_info("cond_out", TensorProto.BOOL, []), tensor_info("acc_out", F, [2, 3])],
    )
    return make_model(
        [helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body)],
        [tensor_info("x", F, [2, 3])],
        [tensor_info("y", F, [2, 3])],
        [
            init("trips", np.array(3, dtype=np.int64)),
            init("one", np.float32(1.0)),
            init("zero", np.array(0, dtype=np.int64)),
        ],
    )


def test_loop_body_folds() -> None:
    model = _loop_model()
    simplified, report = simplify(model, check_n=2)
    assert report.verified
    body_ops = ops(simplified)
    assert body_ops["Loop"] == 1
    for gone in ("Constant", "Shape", "Gather", "Cast"):
        assert body_ops[gone] == 0, body_ops
    # The Identity passing the loop condition through links a body input to a body output: it stays.
    assert body_ops["Add"] == 1 and body_ops["Mul"] == 1 and body_ops["Identity"] == 1
    x = rand(2, 3)
    np.testing.assert_allclose(run(simplified, {"x": x})[0], run(model, {"x": x})[0], rtol=1e-6)


@pytest.mark.parametrize("value", [True, False])
def test_if_output_that_is_a_graph_output_keeps_its_name(value: bool) -> None:
    then_g = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [], [tensor_info("t", F, [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["n"])], "else", [], [tensor_info("n", F, [2])])
    model = make_model(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)],
        [tensor_info("x", F, [2])],
        [tensor_info("y", F, [2])],
        [init("cond", np.array(value))],
    )
    result, modified = apply(model, FoldConstantIfPass())
    assert modified and "If" not in ops(result)
    assert [v.name for v in result.graph.outputs] == ["y"]
    assert_same_outputs(model, result, {"x": rand(2)}, rtol=0, atol=0)


def test_cse_merges_equal_nodes_inside_a_branch_but_not_random_ones() -> None:
    from onnx_ir.passes.common import CommonSubexpressionEliminationPass

    from onnxforge.passes.pipeline import RANDOM_OPS
    from onnxforge.passes.subgraphs import InEverySubgraphPass

    body = helper.make_graph(
        [
            helper.make_node("Exp", ["x"], ["e1"]),
            helper.make_node("Exp", ["x"], ["e2"]),
            helper.make_node("Add", ["e1", "e2"], ["out"]),
        ],
        "then",
        [],
        [tensor_info("out", F, [2, 3])],
    )
    model = make_model(
        [
            helper.make_node("If", ["cond"], ["r"], then_branch=body, else_branch=_branch("else", 1.0)),
            helper.make_node("Bernoulli", ["p"], ["b1"]),
            helper.make_node("Bernoulli", ["p"], ["b2"]),
            helper.make_node("Sub", ["b1", "b2"], ["d"]),
        ],
        [tensor_info("x", F, [2, 3]), tensor_info("cond", TensorProto.BOOL, []), tensor_info("p", F, [64])],
        [tensor_info("r", F, [2, 3]), tensor_info("d", F, [64])],
        [init("one", np.float32(1.0))],
    )
    result, modified = apply(model, InEverySubgraphPass(CommonSubexpressionEliminationPass(), RANDOM_OPS), infer=False)
    assert modified and ops(result)["Exp"] == 1 and ops(result)["Bernoulli"] == 2
    # Without the guard onnx-ir's CSE would turn two independent draws into one.
    result, modified = apply(model, InEverySubgraphPass(CommonSubexpressionEliminationPass()), infer=False)
    assert modified and ops(result)["Bernoulli"] == 1
