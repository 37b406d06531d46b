"""FoldConstantsPass: all-constant nodes become initializers computed by onnxforge's kernels."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper

from onnxforge.passes.constant_folding import FoldConstantsPass

from .helpers import I64, F, apply, assert_same_outputs, cleaned, init, make_model, ops, rand, run, tensor_info


def test_constant_subexpression_folds_and_numbers_match() -> None:
    model = make_model(
        [
            helper.make_node("Constant", [], ["c"], value=helper.make_tensor("v", F, [3], [1.0, 2.0, 3.0])),
            helper.make_node("Mul", ["c", "two"], ["c2"]),
            helper.make_node("Exp", ["c2"], ["e"]),
            helper.make_node("Add", ["x", "e"], ["y"]),
        ],
        [tensor_info("x", F, [2, 3])],
        [tensor_info("y", F, [2, 3])],
        [init("two", np.float32(2.0))],
    )
    folded, modified = apply(model, FoldConstantsPass())
    cleaned(folded)
    assert modified
    assert ops(folded) == {"Add": 1}
    assert_same_outputs(model, folded, {"x": rand(2, 3)}, rtol=0, atol=0)


def test_size_limit_keeps_large_results_unfolded() -> None:
    model = make_model(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["big"], value=helper.make_tensor("v", F, [1], [0.5])),
            helper.make_node("Add", ["x", "big"], ["y"]),
        ],
        [tensor_info("x", F, [64, 64])],
        [tensor_info("y", F, [64, 64])],
        [init("shape", np.array([64, 64], dtype=np.int64))],
    )
    limited, modified = apply(model, FoldConstantsPass(size_limit=1024))
    assert not modified and ops(limited)["ConstantOfShape"] == 1
    unlimited, modified = apply(model, FoldConstantsPass())
    assert modified and "ConstantOfShape" not in ops(cleaned(unlimited))
    assert_same_outputs(model, unlimited, {"x": rand(64, 64)})


def test_random_ops_and_dequantize_are_not_folded() -> None:
    model = make_model(
        [
            helper.make_node("RandomNormal", [], ["r"], shape=[2, 3]),
            helper.make_node("DequantizeLinear", ["q", "scale"], ["w"]),
            helper.make_node("Add", ["r", "w"], ["s"]),
            helper.make_node("Add", ["x", "s"], ["y"]),
        ],
        [tensor_info("x", F, [2, 3])],
        [tensor_info("y", F, [2, 3])],
        [init("q", np.ones((2, 3), dtype=np.int8)), init("scale", np.float32(0.5))],
    )
    result, modified = apply(model, FoldConstantsPass())
    assert not modified
    assert ops(result) == ops(model)


def test_folded_graph_output_keeps_its_name() -> None:
    model = make_model(
        [helper.make_node("Shape", ["c"], ["shape_out"]), helper.make_node("Identity", ["x"], ["y"])],
        [tensor_info("x", F, [2])],
        [tensor_info("y", F, [2]), tensor_info("shape_out", I64, [2])],
        [init("c", np.zeros((4, 5), dtype=np.float32))],
    )
    folded, modified = apply(model, FoldConstantsPass())
    assert modified
    assert [v.name for v in folded.graph.outputs] == ["y", "shape_out"]
    assert_same_outputs(model, folded, {"x": rand(2)}, rtol=0, atol=0)
    assert run(folded, {"x": rand(2)})[1].tolist() == [4, 5]


def test_initializers_that_are_inputs_are_not_constants() -> None:
    model = make_model(
        [helper.make_node("Add", ["w", "w"], ["w2"]), helper.make_node("Mul", ["x", "w2"], ["y"])],
        [tensor_info("x", F, [2]), tensor_info("w", F, [2])],
        [tensor_info("y", F, [2])],
        [init("w", np.ones(2, dtype=np.float32))],
        ir_version=3,
    )
    result, modified = apply(model, FoldConstantsPass())
    assert not modified and ops(result)["Add"] == 1


def _weight_model(reader: str) -> object:
    """A ConstantOfShape weight (static [3] float) read by ``reader`` (Add, or Range, which reads values)."""
    fill = helper.make_node("ConstantOfShape", ["shape"], ["w"], value=helper.make_tensor("v", F, [1], [0.5]))
    if reader == "Add":
        node = helper.make_node("Add", ["x", "w"], ["y"])
        return make_model(
            [fill, node],
            [tensor_info("x", F, [None, 3])],
            [tensor_info("y", F, [None, 3])],
            [init("shape", np.array([3], np.int64))],
        )
    nodes = [
        fill,
        helper.make_node("ReduceSum", ["w"], ["limit"], keepdims=0),
        helper.make_node("Range", ["zero", "limit", "one"], ["y"]),
    ]
    inits = [init("shape", np.array([3], np.int64)), init("zero", np.float32(0)), init("one", np.float32(1))]
    return make_model(nodes, [], [tensor_info("y", F, [None])], inits)


def test_kept_shapes_reported_only_when_inference_could_learn_nothing() -> None:
    fold = FoldConstantsPass()
    apply(_weight_model("Add"), fold)
    assert fold.kept_shapes  # a static float weight read by Add: its readers infer from its shape alone
    fold = FoldConstantsPass()
    _, modified = apply(_weight_model("Range"), fold)
    assert modified and not fold.kept_shapes  # Range's output length depends on the folded values


def test_equal_small_results_share_one_initializer() -> None:
    """Three Constant nodes holding 6.0 (as a PyTorch export writes one per Clip) become one initializer read by
    all three Clips; 0.0 and a float64 6.0 get their own; a folded graph output keeps its own, named one."""

    def scalar(name: str, value: float, elem: int = F) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_v", elem, [], [value]))

    model = make_model(
        [
            scalar("lo", 0.0),
            scalar("hi_a", 6.0),
            scalar("hi_b", 6.0),
            scalar("hi_c", 6.0),
            scalar("hi_out", 6.0),
            scalar("six_double", 6.0, onnx.TensorProto.DOUBLE),
            helper.make_node("Clip", ["x", "lo", "hi_a"], ["a"]),
            helper.make_node("Clip", ["a", "lo", "hi_b"], ["b"]),
            helper.make_node("Clip", ["b", "lo", "hi_c"], ["y"]),
            helper.make_node("Cast", ["six_double"], ["six_cast"], to=F),
            helper.make_node("Add", ["y", "six_cast"], ["z"]),
        ],
        [tensor_info("x", F, [4])],
        [tensor_info("z", F, [4]), tensor_info("hi_out", F, [])],
    )
    folded, modified = apply(model, FoldConstantsPass())
    cleaned(folded)
    assert modified
    clips = [node for node in folded.graph if node.op_type == "Clip"]
    assert len(clips) == 3
    assert len({id(node.inputs[2]) for node in clips}) == 1  # one 6.0 for all three
    assert len({id(node.inputs[1]) for node in clips}) == 1
    assert clips[0].inputs[2] is not clips[0].inputs[1]
    assert folded.graph.outputs[1].name == "hi_out" and folded.graph.outputs[1].is_initializer()
    assert folded.graph.outputs[1] is not clips[0].inputs[2]
    doubles = [v for v in folded.graph.initializers.values() if v.const_value.dtype == ir.DataType.DOUBLE]
    assert not doubles or all(v is not clips[0].inputs[2] for v in doubles)
    x = np.array([-1.0, 3.0, 7.0, 6.0], dtype=np.float32)
    assert_same_outputs(model, folded, {"x": x}, rtol=0, atol=0)
    np.testing.assert_array_equal(run(folded, {"x": x})[0], [6.0, 9.0, 12.0, 12.0])
