"""BatchNormalization + per-channel Mul/Add/Sub/Div folding into the BN's scale and bias.

An inference BN is ``y = s * (x - mean) / sqrt(var + eps) + b`` per channel (axis 1). Followed by a
constant ``c`` that varies along axis 1 only (``c_m`` for channel ``m``, same rules as for the Conv
fold)::

    y * c = BN(x; s * c_m, b * c_m, mean, var)       y / c = BN(x; s / c_m, b / c_m, mean, var)
    y + c = BN(x; s, b + c_m, mean, var)             y - c = BN(x; s, b - c_m, mean, var)

This is what Caffe2-era models (``light_inception_v2``, ``light_densenet121``) write as BN -> Mul -> Add
after every pre-activation BN that no Conv precedes. Applies when the BN's output has no other reader, the
BN is in inference mode with constant parameters, and the rank of ``x`` is known (for the broadcast check).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxforge.passes._fold import SnapshotOrder, editable, fold_into
from onnxforge.passes._util import (
    Names,
    alive,
    all_nodes,
    batchnorm_params,
    is_onnx_op,
    make_initializer,
    rank,
    single_user,
)
from onnxforge.passes.fuse_conv_affine import apply_affine, per_channel_operand


class FuseBatchNormAffinePass(ir.passes.InPlacePass):
    """Fold a per-channel constant Mul/Add/Sub/Div that follows a BatchNormalization into its parameters.

    A chain of them (BN -> Mul -> Add) is folded at once, with the numbers and names that folding one node
    per visit gives (each step rounded to the parameters' type, names taken in the same order), without
    building the intermediate BN and initializers."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        names = Names(model)
        nodes = all_nodes(model)
        order = SnapshotOrder(nodes)
        fused = 0
        for node in nodes:
            if not alive(node) or not is_onnx_op(node, "Mul", "Add", "Sub", "Div"):
                continue
            for value in node.inputs:
                bn = value.producer() if value is not None else None
                if bn is None or bn.graph is not node.graph or not is_onnx_op(bn, "BatchNormalization"):
                    continue
                if single_user(value) is not node:  # type: ignore[arg-type]
                    continue
                if self._fuse(bn, node, value, names, order):  # type: ignore[arg-type]
                    fused += 1
                    break
        return ir.passes.PassResult(model, modified=fused > 0)

    @staticmethod
    def _fuse(bn: ir.Node, node: ir.Node, value: ir.Value, names: Names, order: SnapshotOrder) -> bool:
        params = batchnorm_params(bn)
        x_rank = rank(bn.inputs[0]) or rank(value)
        if params is None or x_rank is None or x_rank < 2:
            return False
        scale, bias = params[0], params[1]
        c = per_channel_operand(node, value, x_rank, scale.shape[0])
        if c is None:
            return False
        graph = node.graph
        assert graph is not None
        base = bn.inputs[1].name if bn.inputs[1] is not None and bn.inputs[1].name else "bn"
        chain = [node]
        while True:  # each step as its own fold would: from the parameters the last one stored
            new_scale, new_bias = apply_affine(
                node.op_type, scale.astype(np.float64), bias.astype(np.float64), c.astype(np.float64)
            )
            scale, bias = new_scale.astype(scale.dtype), new_bias.astype(bias.dtype)
            scale_name, bias_name = names.fresh(f"{base}_fused"), names.fresh(f"{base}_fused_bias")
            base = scale_name
            next_step = _next_in_chain(bn, chain, scale.shape[0], order)
            if next_step is None:
                break
            node, c = next_step
            chain.append(node)
        s = make_initializer(graph, scale, None, scale_name)
        b = make_initializer(graph, bias, None, bias_name)
        return fold_into(bn, [bn.inputs[0], s, b, bn.inputs[3], bn.inputs[4]], absorbs=chain)


def _next_in_chain(
    bn: ir.Node, chain: list[ir.Node], channels: int, order: SnapshotOrder
) -> tuple[ir.Node, np.ndarray] | None:
    """The node after ``chain`` that a fold one node per visit would also take into ``bn`` (the only reader
    of the chain's output, visited after it, with a per-channel constant), with its vector; None when there
    is none or the chain could not be edited in place with it."""
    last = chain[-1]
    out = last.outputs[0]
    reader = single_user(out)
    if reader is None or reader.graph is not last.graph or not order.after(last, reader):
        return None
    x_rank = rank(bn.inputs[0]) or rank(out)
    if x_rank is None or x_rank < 2 or not is_onnx_op(reader, "Mul", "Add", "Sub", "Div"):
        return None
    vector = per_channel_operand(reader, out, x_rank, channels)
    if vector is None or not editable(bn, [*chain, reader]):
        return None
    return reader, vector
