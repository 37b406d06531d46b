"""Fusions edit the surviving node in place (``_util.fold_into``) instead of rebuilding it: the graph, the
names, the absorbed-node record and the numbers must be what the rebuilt copy gave."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper

from onnxforge.passes import _util
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
    """The model after ``passes`` as they run (in-place edits), and with every edit refused (rebuilt copies)."""
    edited, modified = apply(model, *(make() for make in passes))
    assert modified
    with monkeypatch.context() as patch:
        patch.setattr(_util, "_editable_for", lambda node, absorbs: False)
        rebuilt, _ = apply(model, *(make() for make in passes))
    return cleaned(edited), cleaned(rebuilt)


def _assert_same_graph(edited: ir.Model, rebuilt: ir.Model) -> None:
    assert ir.serde.serialize_model(edited) == ir.serde.serialize_model(rebuilt)
    assert [(n.name, n.meta.get(ABSORBED)) for n in edited.graph] == [(n.name, n.meta.get(ABSORBED)) for n in rebuilt.graph]


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


def test_a_bn_with_running_statistics_outputs_is_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A BN that declares (unread) running-statistics outputs cannot be edited into the one-output copy.

    Only the graphs are compared: the engine runs such an opset-9 BN with batch statistics (training mode),
    while the fusions' inference-mode check looks only at the outputs in use."""
    model = _bn_mul_add()
    bn = model.graph.node[0]
    bn.output.extend(["running_mean", "running_var", "saved_mean", "saved_var"])
    model = make_model(
        list(model.graph.node), list(model.graph.input), list(model.graph.output), list(model.graph.initializer), opset=9
    )
    edited, rebuilt = _fused_both_ways(model, [FuseBatchNormAffinePass], monkeypatch)
    _assert_same_graph(edited, rebuilt)
    (fused,) = list(edited.graph)
    assert len(fused.outputs) == 1 and fused.meta[ABSORBED] == ["mul", "add"]
