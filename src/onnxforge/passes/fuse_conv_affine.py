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

from onnxforge.passes._fold import SnapshotOrder, editable
from onnxforge.passes._util import Names, alive, all_nodes, channel_vector, const_array, is_onnx_op, single_user
from onnxforge.passes.fuse_conv_bn import FOLDED_WEIGHT, conv_weights, fused_names, replace_conv, scaled_weight


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
    """Fold a per-channel constant Mul/Add/Sub/Div that follows a Conv into its weights and bias.

    A chain of them (Conv -> Mul -> Add, as Caffe2-era models write) is folded at once, with the numbers and
    names that folding one node per visit gives (each step rounded to the weight's type, names taken in
    the same order), without building the intermediate Conv and initializers."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        names = Names(model)
        nodes = all_nodes(model)
        order = SnapshotOrder(nodes)
        fused = 0
        for node in nodes:
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
                if _fold_chain(conv, weight, bias, _chain(conv, node, c, weight, order), names):
                    fused += 1
                    break
        return ir.passes.PassResult(model, modified=fused > 0)


def _chain(
    conv: ir.Node, node: ir.Node, c: np.ndarray, weight: np.ndarray, order: SnapshotOrder
) -> list[tuple[ir.Node, np.ndarray]]:
    """``node`` with its vector ``c``, then each next node (the only reader of the one before, visited after it)
    that a fold one node per visit would also take into ``conv``, while the chain can be edited in place."""
    chain = [(node, c)]
    if not editable(conv, [node]):
        return chain
    while True:
        last = chain[-1][0]
        out = last.outputs[0]
        reader = single_user(out)
        if reader is None or reader.graph is not last.graph or not order.after(last, reader):
            return chain
        vector = per_channel_operand(reader, out, weight.ndim, weight.shape[0])
        if vector is None or not editable(conv, [*(n for n, _ in chain), reader]):
            return chain
        chain.append((reader, vector))


def _fold_chain(
    conv: ir.Node, weight: np.ndarray, bias: np.ndarray, chain: list[tuple[ir.Node, np.ndarray]], names: Names
) -> bool:
    """Fold ``chain`` into ``conv`` (weight ``weight``, bias ``bias``), step by step as separate folds would.

    Add and Sub leave the weight as it is: the Conv keeps reading the same initializer. So does a weight an
    earlier fold made for this Conv alone, rescaled in place once the Conv is edited; the first Mul or Div
    that meets a weight of the model's makes a copy, which later steps rescale in place."""
    base = conv.inputs[1].name or "conv"  # type: ignore[union-attr]
    owns_weight = _folded_for(conv)  # an earlier fold made it for this Conv alone
    deferred: list[np.ndarray] = []  # scales for the Conv's own folded weight, applied once the fold is done
    copy: np.ndarray | None = None
    copy_name: str | None = None
    ones = np.ones(weight.shape[0])
    for node, c in chain:
        scale, shift = apply_affine(node.op_type, ones, bias.astype(np.float64), c.astype(np.float64))
        bias = shift.astype(weight.dtype)
        scales = node.op_type in ("Mul", "Div")
        weight_name, bias_name = fused_names(base, scales and copy is None and not owns_weight, names)
        if not scales:
            continue
        if copy is not None:
            scaled_weight(copy, scale, out=copy)
        elif owns_weight:
            deferred.append(scale)
        else:
            copy, copy_name = scaled_weight(weight, scale), weight_name
            base = weight_name  # type: ignore[assignment]
    if not replace_conv(conv, copy, bias, [node for node, _ in chain], (copy_name, bias_name)):
        return False
    for scale in deferred:
        scaled_weight(weight, scale, out=weight)
    return True
