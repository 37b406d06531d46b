"""MatMul + Add -> Gemm, where Gemm's rules allow it.

``Add(MatMul(A, B), C) = Gemm(A, B, C)`` (alpha = beta = 1, no transposes) holds when:

- ``A`` is ``[M, K]`` and ``B`` is ``[K, N]``: both of rank 2 exactly (MatMul on other ranks batches or
  promotes vectors, which Gemm does not);
- ``C`` broadcasts one way to ``[M, N]``: rank <= 2 and each dim 1 or equal to the matching output dim,
  so the Add's result is ``[M, N]`` as Gemm's is (a ``C`` that would grow the result blocks the rule);
- the element type is one Gemm takes (float16, float, double, bfloat16);
- the MatMul's output has no other reader.

``C`` need not be constant. Either operand order of the Add is accepted.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxforge.passes._util import alive, all_nodes, is_onnx_op, onnx_opset, rank, rebuild, remove_if_dead, single_user

_GEMM_TYPES = frozenset({ir.DataType.FLOAT16, ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.BFLOAT16})


def _broadcasts_into(c: ir.Value, out: ir.Value) -> bool:
    if c.shape is None or out.shape is None or len(out.shape) != 2 or len(c.shape) > 2:
        return False
    aligned = list(out.shape)[2 - len(c.shape) :]
    return all(
        cd == 1 or (isinstance(cd, int) and cd == od) or (not isinstance(cd, int) and cd == od and cd.value)
        for cd, od in zip(c.shape, aligned)
    )


class MatMulAddToGemmPass(ir.passes.InPlacePass):
    """Turn a rank-2 MatMul followed by an Add of a one-way-broadcastable C into one Gemm."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        fused = 0
        if onnx_opset(model) < 7:  # Gemm before opset 7 broadcasts C only with broadcast=1; not worth the case
            return ir.passes.PassResult(model, modified=False)
        for add in all_nodes(model):
            if not alive(add) or not is_onnx_op(add, "Add") or len(add.inputs) != 2:
                continue
            for index, value in enumerate(add.inputs):
                other = add.inputs[1 - index]
                matmul = value.producer() if value is not None else None
                if matmul is None or other is None or not is_onnx_op(matmul, "MatMul") or matmul.graph is not add.graph:
                    continue
                if single_user(value) is not add or other is value:  # type: ignore[arg-type]
                    continue
                a, b = matmul.inputs
                if a is None or b is None or rank(a) != 2 or rank(b) != 2 or a.dtype not in _GEMM_TYPES:
                    continue
                if not _broadcasts_into(other, value):  # type: ignore[arg-type]
                    continue
                if rebuild(matmul, [a, b, other], before=add, replaces=add.outputs[0], op_type="Gemm", absorbs=[add]):
                    remove_if_dead(add)
                    remove_if_dead(matmul)
                    fused += 1
                    break
        return ir.passes.PassResult(model, modified=fused > 0)
