"""Fusions edit the surviving node in place (``_fold.fold_into``) instead of rebuilding it, and fold a chain
(Conv/BN -> Mul -> Add) at once: the graph, the names, the absorbed-node record and the numbers must be
what rebuilt copies, one absorbed node per visit, gave."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper

from onnxforge.passes import _fold, fuse_bn_affine, fuse_conv_affine
from onnxforge.passes._util import ABSORBED
from onnxforge.passes.fuse_bn_affine import FuseBatchNormAffinePass
from onnxforge.passes.fuse_conv_affine import FuseConvAffinePass
from onnxforge.passes.fuse_conv_bn import FuseConvBatchNormPass

from .helpers import F, apply, assert_same_outputs, cleaned, init, make_model, rand, tensor_info

RNG = np.random.default_rng(3)


def _bn_inits(prefix: str, channels: int) -> list[onnx.TensorProto]:
    return [
        init(f"{prefix}s", RNG.uniform(0.5, 2, channels).astype(np.float32)),
        init(f"{prefix}b", RNG.standard_normal(channels).astype(np.float32)),
        init(f"{prefix}m", RNG.standard_normal(channels).astype(np.float32)),
        init(f"{prefix}v", RNG.uniform(0.5, 2, channels).astype(np.float32)),
    ]


def _bn(x: str, y: str, name: str, prefix: str = "bn_") -> onnx.NodeProto:
    return helper.make_node(
        "BatchNormalization", [x, f"{prefix}s", f"{prefix}b", f"{prefix}m", f"{prefix}v"], [y], name=name, epsilon=1e-3
    )


def _conv_bn_mul_add(with_bias: bool, between: bool) -> onnx.ModelProto:
    """Conv -> BN -> Mul -> Add -> Relu; with ``between``, a Relu of the input stands between the Conv and
    the BN in graph order."""
    conv_inputs = ["x", "w", "cb"] if with_bias else ["x", "w"]
    nodes = [helper.make_node("Conv", conv_inputs, ["c"], name="conv", pads=[1, 1, 1, 1], doc_string="conv doc")]
    if between:
        nodes.append(helper.make_node("Relu", ["x"], ["r"], name="relu"))
    nodes += [
        _bn("c", "b", "bn"),
        helper.make_node("Mul", ["b", "k"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "s"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["y"], name="out"),
    ]
    outputs = [tensor_info("y", F, [1, 6, 6, 6])] + ([tensor_info("r", F, [1, 4, 6, 6])] if between else [])
    return make_model(
        nodes,
        [tensor_info("x", F, [1, 4, 6, 6])],
        outputs,
        [
            init("w", rand(6, 4, 3, 3, seed=11)),
            init("cb", rand(6, seed=12)),
            init("k", RNG.uniform(0.5, 2, (6, 1, 1)).astype(np.float32)),
            init("s", RNG.standard_normal((1, 6, 1, 1)).astype(np.float32)),
            *_bn_inits("bn_", 6),
        ],
    )


def _bn_mul_add() -> onnx.ModelProto:
    return make_model(
        [
            _bn("x", "b", "bn"),
            helper.make_node("Mul", ["b", "k"], ["m"], name="mul"),
            helper.make_node("Add", ["m", "s"], ["y"], name="add"),
        ],
        [tensor_info("x", F, [2, 5, 4, 4])],
        [tensor_info("y", F, [2, 5, 4, 4])],
        [*_bn_inits("bn_", 5), init("k", rand(5, 1, 1, seed=5)), init("s", rand(5, 1, 1, seed=6))],
    )


def _fused_both_ways(
    model: onnx.ModelProto, passes: list[type[ir.passes.PassBase]], monkeypatch: pytest.MonkeyPatch
) -> tuple[ir.Model, ir.Model]:
    """The model after ``passes`` as they run (in-place edits, chains), and with every edit refused (rebuilt
    copies, one absorbed node at a time)."""
    edited, modified = apply(model, *(make() for make in passes))
    assert modified
    with monkeypatch.context() as patch:
        for module in (_fold, fuse_bn_affine, fuse_conv_affine):
            patch.setattr(module, "editable", lambda node, absorbs: False)
        rebuilt, _ = apply(model, *(make() for make in passes))
    return cleaned(edited), cleaned(rebuilt)


def _assert_same_graph(edited: ir.Model, rebuilt: ir.Model) -> None:
    assert ir.serde.serialize_model(edited) == ir.serde.serialize_model(rebuilt)
    assert [(n.name, n.meta.get(ABSORBED)) for n in edited.graph] == [
        (n.name, n.meta.get(ABSORBED)) for n in rebuilt.graph
    ]


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("between", [True, False])
def test_conv_bn_mul_add_edited_in_place_equals_the_rebuilt_graph(
    with_bias: bool, between: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _conv_bn_mul_add(with_bias, between)
    edited, rebuilt = _fused_both_ways(model, [FuseConvBatchNormPass, FuseConvAffinePass], monkeypatch)
    _assert_same_graph(edited, rebuilt)
    conv = next(node for node in edited.graph if node.op_type == "Conv")
    assert conv.name == "conv" and conv.meta[ABSORBED] == ["bn", "mul", "add"]
    assert conv.outputs[0].name == "a" and not conv.doc_string
    # The Conv stands where the last node it absorbed stood.
    assert [node.name for node in edited.graph] == (["relu", "conv", "out"] if between else ["conv", "out"])
    assert_same_outputs(model, edited, {"x": rand(1, 4, 6, 6, seed=13)}, rtol=1e-4, atol=1e-4)


def test_bn_mul_add_edited_in_place_equals_the_rebuilt_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _bn_mul_add()
    edited, rebuilt = _fused_both_ways(model, [FuseBatchNormAffinePass], monkeypatch)
    _assert_same_graph(edited, rebuilt)
    (bn,) = list(edited.graph)
    assert bn.name == "bn" and bn.meta[ABSORBED] == ["mul", "add"]
    assert_same_outputs(model, edited, {"x": rand(2, 5, 4, 4, seed=7)}, rtol=1e-4, atol=1e-4)


def test_a_bn_that_lists_running_statistics_outputs_is_not_folded() -> None:
    """Below opset 14 a BN listing its statistics outputs (read or not) runs in training mode, with batch
    statistics (onnxruntime too): folding it as an inference affine would change the numbers."""
    model = _bn_mul_add()
    bn = model.graph.node[0]
    bn.output.extend(["running_mean", "running_var", "saved_mean", "saved_var"])
    model = make_model(
        list(model.graph.node),
        list(model.graph.input),
        list(model.graph.output),
        list(model.graph.initializer),
        opset=9,
    )
    folded, modified = apply(model, FuseBatchNormAffinePass())
    assert not modified
    assert [node.op_type for node in folded.graph] == ["BatchNormalization", "Mul", "Add"]
    assert_same_outputs(model, folded, {"x": rand(2, 5, 4, 4, seed=7)}, rtol=1e-5, atol=1e-5)


def _conv_chain(steps: list[str], with_bn: bool) -> onnx.ModelProto:
    """Conv (-> BN) -> each op of ``steps`` with its own per-channel constant -> Relu."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c0"], name="conv", pads=[1, 1, 1, 1])]
    if with_bn:
        nodes.append(_bn("c0", "b0", "bn"))
    value = "b0" if with_bn else "c0"
    constants = []
    for index, op in enumerate(steps):
        constants.append(init(f"k{index}", RNG.uniform(0.5, 2, (6, 1, 1)).astype(np.float32)))
        nodes.append(helper.make_node(op, [value, f"k{index}"], [f"s{index}"], name=f"{op.lower()}{index}"))
        value = f"s{index}"
    nodes.append(helper.make_node("Relu", [value], ["y"], name="out"))
    return make_model(
        nodes,
        [tensor_info("x", F, [1, 4, 6, 6])],
        [tensor_info("y", F, [1, 6, 6, 6])],
        [init("w", rand(6, 4, 3, 3, seed=21)), *constants, *_bn_inits("bn_", 6)],
    )


@pytest.mark.parametrize("steps", [["Mul", "Div", "Add"], ["Add", "Mul", "Sub", "Mul"], ["Div", "Mul"], ["Sub"]])
@pytest.mark.parametrize("with_bn", [True, False])
def test_conv_affine_chain_equals_one_fold_per_visit(
    steps: list[str], with_bn: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first Mul/Div copies a weight of the model (or rescales the BN fold's copy in place); each step's
    rounding and initializer names are those of separate folds."""
    model = _conv_chain(steps, with_bn)
    passes: list[type[ir.passes.PassBase]] = (
        [FuseConvBatchNormPass, FuseConvAffinePass] if with_bn else [FuseConvAffinePass]
    )
    edited, rebuilt = _fused_both_ways(model, passes, monkeypatch)
    _assert_same_graph(edited, rebuilt)
    conv = next(node for node in edited.graph if node.op_type == "Conv")
    absorbed = [f"{op.lower()}{index}" for index, op in enumerate(steps)]
    assert conv.meta[ABSORBED] == (["bn", *absorbed] if with_bn else absorbed)
    assert [node.name for node in edited.graph] == ["conv", "out"]
    assert_same_outputs(model, edited, {"x": rand(1, 4, 6, 6, seed=22)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps", [["Div", "Sub"], ["Mul", "Add", "Mul"]])
def test_bn_affine_chain_equals_one_fold_per_visit(steps: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = [_bn("x", "b0", "bn")]
    value, constants = "b0", []
    for index, op in enumerate(steps):
        constants.append(init(f"k{index}", RNG.uniform(0.5, 2, (5, 1, 1)).astype(np.float32)))
        nodes.append(helper.make_node(op, [value, f"k{index}"], [f"s{index}"], name=f"n{index}"))
        value = f"s{index}"
    model = make_model(
        nodes,
        [tensor_info("x", F, [2, 5, 4, 4])],
        [tensor_info(value, F, [2, 5, 4, 4])],
        [*_bn_inits("bn_", 5), *constants],
    )
    edited, rebuilt = _fused_both_ways(model, [FuseBatchNormAffinePass], monkeypatch)
    _assert_same_graph(edited, rebuilt)
    (bn,) = list(edited.graph)
    assert bn.meta[ABSORBED] == [f"n{index}" for index in range(len(steps))]
    assert_same_outputs(model, edited, {"x": rand(2, 5, 4, 4, seed=9)}, rtol=1e-4, atol=1e-4)


def test_a_chain_takes_no_node_the_pass_would_visit_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """In an unsorted graph the Add comes before the Mul it reads: one visit per node folds only the Mul."""
    model = _conv_chain(["Mul", "Add"], with_bn=False)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([nodes[0], nodes[2], nodes[1], nodes[3]])
    ir_model = ir.serde.deserialize_model(model)
    assert FuseConvAffinePass()(ir_model).modified
    assert [node.op_type for node in ir_model.graph] == ["Add", "Conv", "Relu"]


@pytest.mark.parametrize("output", ["s0", "s1"])
def test_a_chain_ending_or_passing_at_a_graph_output_equals_one_fold_per_visit(
    output: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last node's output is a graph output (it keeps ``install``'s naming), or an intermediate one is
    (the chain stops there: the graph still reads it)."""
    model = _conv_chain(["Mul", "Add"], with_bn=True)
    model.graph.output.append(tensor_info(output, F, [1, 6, 6, 6]))
    edited, rebuilt = _fused_both_ways(model, [FuseConvBatchNormPass, FuseConvAffinePass], monkeypatch)
    _assert_same_graph(edited, rebuilt)
    assert_same_outputs(model, edited, {"x": rand(1, 4, 6, 6, seed=23)}, rtol=1e-4, atol=1e-4)
