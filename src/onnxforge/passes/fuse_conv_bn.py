"""Conv + BatchNormalization folding: the BN's per-channel affine goes into the Conv's weights and bias.

An inference BN computes ``y = k * (x - mean) + bias`` per channel with ``k = scale / sqrt(var + eps)``.
For ``x = Conv(X, W, B)`` with ``M`` output channels (``W`` of shape ``[M, C/group, k1, ...]``)::

    W' = W * k[:, None, ..., None]
    B' = k * (B - mean) + bias        (B = 0 when the Conv has no bias)

so ``BN(Conv(X, W, B)) = Conv(X, W', B')``. Applies when the Conv's output is read by the BN only, ``W``,
``B`` and the BN parameters are constants, and the BN is in inference mode (one output, no
``training_mode``, ``spatial=1``). ``k`` and ``B'`` are computed in float64, ``W'`` in ``W``'s type (see
:func:`scaled_weight`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from onnxforge.passes._fold import fold_into
from onnxforge.passes._util import (
    Names,
    alive,
    all_nodes,
    batchnorm_affine,
    const_array,
    is_onnx_op,
    make_initializer,
    single_user,
)


def conv_weights(conv: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """A float Conv's constant ``(W, B)`` (zeros for a missing bias), or None."""
    if not is_onnx_op(conv, "Conv") or len(conv.inputs) < 2 or conv.inputs[0] is None:
        return None
    weight = const_array(conv.inputs[1])
    if weight is None or weight.dtype.kind != "f" or weight.ndim < 3:
        return None
    has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
    bias = const_array(conv.inputs[2]) if has_bias else np.zeros(weight.shape[0], dtype=weight.dtype)
    if bias is None or bias.shape != (weight.shape[0],) or bias.dtype != weight.dtype:
        return None
    return weight, bias


# Tensor.meta key marking a weight array a fold made (in memory only): a later fold of the same Conv may
# rescale it in place rather than allocate another copy (see fuse_conv_affine).
FOLDED_WEIGHT = "onnxforge.folded_weight"


def scaled_weight(weight: np.ndarray, scale: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``weight * scale`` (``scale`` per output channel, along axis 0), in ``weight``'s type.

    A float32 (or wider) weight is multiplied in its own type, by ``scale`` rounded to it: at most one ulp
    from the float64 product, and 3x faster than NumPy's casting loop, which a fold of every conv of a
    model paid on each session build. Narrower floats are computed in float32, on the way in and out.
    """
    compute = np.promote_types(weight.dtype, np.float32)
    factor = scale.astype(compute).reshape((-1,) + (1,) * (weight.ndim - 1))
    if compute == weight.dtype:
        return np.multiply(weight, factor, out=out)
    out = np.empty_like(weight) if out is None else out
    np.multiply(weight, factor, out=out, dtype=compute, casting="same_kind")
    return out


def fused_names(base: str, scales: bool, names: Names) -> tuple[str | None, str]:
    """Names for a fold's new weight (when it ``scales`` it into a new array) and bias, ``base`` the Conv's
    weight name: taken in this order so a chain folded at once names them as folds one node at a time."""
    weight_name = names.fresh(f"{base}_fused") if scales else None
    return weight_name, names.fresh(f"{base}_fused_bias")


def replace_conv(
    conv: ir.Node,
    weight: np.ndarray | None,
    bias: np.ndarray,
    absorbs: Sequence[ir.Node],
    names: tuple[str | None, str],
) -> bool:
    """``conv`` with new constant weight (None: the same) and bias (named ``names``, see ``fused_names``),
    absorbing the chain ``absorbs`` that reads its output and taking over its place and output (``fold_into``)."""
    graph = absorbs[-1].graph
    weight_name, bias_name = names
    assert graph is not None and conv.inputs[1] is not None
    if weight is None:
        w = conv.inputs[1]
    else:
        assert weight_name is not None
        w = make_initializer(graph, weight, None, weight_name)
        if w.const_value is not None:
            w.const_value.meta[FOLDED_WEIGHT] = True
    b = make_initializer(graph, bias, None, bias_name)
    return fold_into(conv, [conv.inputs[0], w, b], absorbs=absorbs)


class FuseConvBatchNormPass(ir.passes.InPlacePass):
    """Fold an inference BatchNormalization that follows a Conv into the Conv's weights and bias."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        names = Names(model)
        fused = 0
        for bn in all_nodes(model):
            if not alive(bn) or not is_onnx_op(bn, "BatchNormalization") or bn.inputs[0] is None:
                continue
            conv = bn.inputs[0].producer()
            if conv is None or conv.graph is not bn.graph or single_user(bn.inputs[0]) is not bn:
                continue
            weights, affine = conv_weights(conv), batchnorm_affine(bn)
            if weights is None or affine is None:
                continue
            (weight, bias), (k, c) = weights, affine
            if k.shape != (weight.shape[0],):
                continue
            new_weight = scaled_weight(weight, k)
            new_bias = (k * bias.astype(np.float64) + c).astype(weight.dtype)
            base = conv.inputs[1].name or "conv"  # type: ignore[union-attr]
            if replace_conv(conv, new_weight, new_bias, [bn], fused_names(base, True, names)):
                fused += 1
        return ir.passes.PassResult(model, modified=fused > 0)
