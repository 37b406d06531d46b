"""Gemm + BatchNormalization folding: the BN's per-feature affine goes into the Gemm's B and C.

``Gemm`` computes ``Y = alpha * A' B' + beta * C`` (``A'``, ``B'`` transposed or not) of shape ``[M, N]``;
an inference BN over it is ``k * Y + c`` per column ``n`` (``k = scale / sqrt(var + eps)``,
``c = bias - k * mean``). So::

    B'' = B' * k[None, :]   (that is, B's columns scaled when transB=0, its rows when transB=1)
    C'' = beta * C * k + c  (broadcast to C's shape combined with [N]; just c when there is no C)
    BN(Gemm(A, B, C; alpha, beta)) = Gemm(A, B'', C''; alpha, beta=1)

Applies when the Gemm's output has no other reader, ``B``, ``C`` (if any) and the BN's parameters are
constants of a float type, and the BN is in inference mode.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxforge.passes._util import (
    Names,
    alive,
    all_nodes,
    attr,
    batchnorm_affine,
    const_array,
    is_onnx_op,
    make_initializer,
    rebuild,
    remove_if_dead,
    single_user,
)


class FuseGemmBatchNormPass(ir.passes.InPlacePass):
    """Fold an inference BatchNormalization that follows a Gemm into the Gemm's B and C."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        names = Names(model)
        fused = 0
        for bn in all_nodes(model):
            if not alive(bn) or not is_onnx_op(bn, "BatchNormalization") or bn.inputs[0] is None:
                continue
            gemm = bn.inputs[0].producer()
            if gemm is None or not is_onnx_op(gemm, "Gemm") or gemm.graph is not bn.graph:
                continue
            if single_user(bn.inputs[0]) is not bn:
                continue
            if self._fuse(gemm, bn, names):
                fused += 1
        return ir.passes.PassResult(model, modified=fused > 0)

    @staticmethod
    def _fuse(gemm: ir.Node, bn: ir.Node, names: Names) -> bool:
        affine = batchnorm_affine(bn)
        if affine is None or len(gemm.inputs) < 2:
            return False
        k, c = affine
        b = const_array(gemm.inputs[1])
        has_c = len(gemm.inputs) > 2 and gemm.inputs[2] is not None
        bias = const_array(gemm.inputs[2]) if has_c else None
        if b is None or b.dtype.kind != "f" or b.ndim != 2 or (has_c and bias is None):
            return False
        trans_b = attr(gemm, "transB", 0)
        n = b.shape[0] if trans_b else b.shape[1]
        if k.shape != (n,):
            return False
        scale = k[:, None] if trans_b else k[None, :]
        new_b = (b.astype(np.float64) * scale).astype(b.dtype)
        if bias is not None:
            if bias.dtype != b.dtype or bias.ndim > 2 or (bias.ndim >= 1 and bias.shape[-1] not in (1, n)):
                return False
            beta = float(attr(gemm, "beta", 1.0))
            new_c = beta * bias.astype(np.float64) * k + c
        else:
            new_c = c
        graph = bn.graph
        assert graph is not None and gemm.inputs[1] is not None
        base = gemm.inputs[1].name or "gemm"
        b_value = make_initializer(graph, new_b, names, f"{base}_fused")
        c_value = make_initializer(graph, new_c.astype(b.dtype), names, f"{base}_fused_bias")
        if not rebuild(
            gemm,
            [gemm.inputs[0], b_value, c_value],
            before=bn,
            replaces=bn.outputs[0],
            attributes={"beta": 1.0},
            absorbs=[bn],
        ):
            return False
        remove_if_dead(bn)
        remove_if_dead(gemm)
        return True
