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

from onnxforge.passes._util import (
    Names,
    alive,
    all_nodes,
    batchnorm_affine,
    const_array,
    fold_into,
    is_onnx_op,
    make_initializer,
    rank,
    single_user,
)
from onnxforge.passes.fuse_conv_affine import apply_affine, per_channel_operand


class FuseBatchNormAffinePass(ir.passes.InPlacePass):
    """Fold a per-channel constant Mul/Add/Sub/Div that follows a BatchNormalization into its parameters."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        names = Names(model)
        fused = 0
        for node in all_nodes(model):
            if not alive(node) or not is_onnx_op(node, "Mul", "Add", "Sub", "Div"):
                continue
            for value in node.inputs:
                bn = value.producer() if value is not None else None
                if bn is None or bn.graph is not node.graph or not is_onnx_op(bn, "BatchNormalization"):
                    continue
                if single_user(value) is not node:  # type: ignore[arg-type]
                    continue
                if self._fuse(bn, node, value, names):  # type: ignore[arg-type]
                    fused += 1
                    break
        return ir.passes.PassResult(model, modified=fused > 0)

    @staticmethod
    def _fuse(bn: ir.Node, node: ir.Node, value: ir.Value, names: Names) -> bool:
        affine = batchnorm_affine(bn)
        x_rank = rank(bn.inputs[0]) or rank(value)
        scale = const_array(bn.inputs[1])
        bias = const_array(bn.inputs[2])
        if affine is None or x_rank is None or x_rank < 2 or scale is None or bias is None:
            return False
        c = per_channel_operand(node, value, x_rank, scale.shape[0])
        if c is None:
            return False
        new_scale, new_bias = apply_affine(node.op_type, scale.astype(np.float64), bias.astype(np.float64), c.astype(np.float64))
        graph = node.graph
        assert graph is not None
        base = bn.inputs[1].name if bn.inputs[1] is not None and bn.inputs[1].name else "bn"
        s = make_initializer(graph, new_scale.astype(scale.dtype), names, f"{base}_fused")
        b = make_initializer(graph, new_bias.astype(bias.dtype), names, f"{base}_fused_bias")
        inputs = [bn.inputs[0], s, b, bn.inputs[3], bn.inputs[4]]
        return fold_into(bn, inputs, absorbs=node)
