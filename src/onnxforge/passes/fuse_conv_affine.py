"""Conv + per-channel Mul/Add/Sub/Div folding into the Conv's weights and bias.

For ``y = Conv(X, W, B)`` with ``M`` output channels and a constant ``c`` that varies along the channel
axis only (``[M, 1, 1]``, ``[1, M, 1, 1]``, a scalar...), with ``c_m`` its value for channel ``m``::

    y * c  = Conv(X, W * c_m, B * c_m)        (Mul, either operand order)
    y / c  = Conv(X, W / c_m, B / c_m)        (Div, ``c`` the divisor, no zero in ``c``)
    y + c  = Conv(X, W, B + c_m)              (Add, either operand order)
    y - c  = Conv(X, W, B - c_m)              (Sub, ``c`` subtracted)

Applies when the Conv's output has no other reader, ``W``/``B``/``c`` are constants of the same float
type, and ``c``'s rank is at most the Conv output's so the broadcast cannot change the output's shape.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxforge.passes._util import Names, alive, all_nodes, channel_vector, const_array, is_onnx_op, single_user
from onnxforge.passes.fuse_conv_bn import FOLDED_WEIGHT, conv_weights, replace_conv, scaled_weight


def per_channel_operand(node: ir.Node, producer_value: ir.Value, out_rank: int, channels: int) -> np.ndarray | None:
    """The per-channel vector ``c`` of a binary op ``node`` applied to ``producer_value`` and a constant,
    or None when the op, operand order, or broadcast does not fit the rules above."""
    if not is_onnx_op(node, "Mul", "Add", "Sub", "Div") or len(node.inputs) != 2:
        return None
    first, second = node.inputs
    if first is producer_value:
        other = second
    elif second is producer_value and node.op_type in ("Mul", "Add"):
        other = first
    else:
        return None
    if other is producer_value:
        return None
    constant = const_array(other)
    if constant is None or constant.dtype.kind != "f":
        return None
    vector = channel_vector(constant, out_rank, channels)
    if vector is None or (node.op_type == "Div" and np.any(vector == 0)):
        return None
    return vector


def apply_affine(op_type: str, scale: np.ndarray, shift: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` of ``op(scale * x + shift, c)`` in the same form, all per channel (float64)."""
    if op_type == "Mul":
        return scale * c, shift * c
    if op_type == "Div":
        return scale / c, shift / c
    if op_type == "Add":
        return scale, shift + c
    return scale, shift - c


def _folded_for(conv: ir.Node) -> bool:
    """Whether ``conv``'s weight is an array a fold made (``FOLDED_WEIGHT``) that nothing else reads: never
    a loaded or user-given array, nor one shared with another node (initializer deduplication)."""
    value = conv.inputs[1]
    if value is None or value.const_value is None or value.is_graph_input() or value.is_graph_output():
        return False
    meta = getattr(value.const_value, "meta", None)
    if meta is None or not meta.get(FOLDED_WEIGHT) or len(value.uses()) != 1:
        return False
    array = value.const_value.numpy()
    return isinstance(array, np.ndarray) and array.flags.writeable and array.flags.owndata


class FuseConvAffinePass(ir.passes.InPlacePass):
    """Fold a per-channel constant Mul/Add/Sub/Div that follows a Conv into its weights and bias."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        names = Names(model)
        fused = 0
        for node in all_nodes(model):
            if not alive(node) or not is_onnx_op(node, "Mul", "Add", "Sub", "Div"):
                continue
            for value in node.inputs:
                conv = value.producer() if value is not None else None
                if conv is None or conv.graph is not node.graph or single_user(value) is not node:  # type: ignore[arg-type]
                    continue
                weights = conv_weights(conv)
                if weights is None:
                    continue
                weight, bias = weights
                c = per_channel_operand(node, value, weight.ndim, weight.shape[0])  # type: ignore[arg-type]
                if c is None or const_array(value) is not None:
                    continue
                ones = np.ones(weight.shape[0])
                scale, shift = apply_affine(node.op_type, ones, bias.astype(np.float64), c.astype(np.float64))
                # Add and Sub leave the weight as it is: the Conv keeps reading the same initializer. So does a
                # weight an earlier fold made for this Conv alone, rescaled in place once the Conv is rebuilt.
                scales = node.op_type in ("Mul", "Div")
                in_place = scales and _folded_for(conv)
                new_weight = scaled_weight(weight, scale) if scales and not in_place else None
                if replace_conv(conv, new_weight, shift.astype(weight.dtype), node, names):
                    if in_place:
                        scaled_weight(weight, scale, out=weight)
                    fused += 1
                    break
        return ir.passes.PassResult(model, modified=fused > 0)
