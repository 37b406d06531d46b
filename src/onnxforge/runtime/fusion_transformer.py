"""Plan-time rewrites for transformer blocks: Linear layers and attention cores (see fusion.py for the rules).

- **Linear**: ``MatMul(X, W) + b`` with a constant float32 matrix ``W`` (K, N) and a constant bias of shape
  (N,), optionally followed by the exact-GELU step ``fusion_pairs.fuse_gelu`` built, is one step: ``X`` viewed as
  (rows, K) is multiplied into a fresh (rows, N) buffer, then the bias is added and GELU applied in that
  buffer. With several intra-op threads the rows are cut into bands that run side by side
  (:func:`onnxforge.runtime.threads.parallel`, single-threaded BLAS per band), so the elementwise tail
  is parallel too.
- **Attention core**: ``S = MatMul(Q, K)``, then any chain of Mul or Div by a constant, Add of a constant
  mask and ``Where(constant condition, constant fill, S)`` (either branch), then Softmax over the last
  axis, then ``MatMul(P, V)``: one step that scales, masks and normalises the scores buffer in place
  (softmax: subtract the row max, exp, divide by the row sum). When the output's only reader is
  ``Transpose(perm=[0, 2, 1, 3])`` (heads back next to features, as every exporter spells multi-head
  attention), the product is written straight into a (B, M, H, D) buffer and handed on as its
  (B, H, M, D) view, so that Transpose and the Reshape after it cost nothing. Across threads, the
  (batch, head) matrices are split into groups.

Each fused step keeps the original kernels and runs them unchanged whenever a run's values do not fit the
fast path (another dtype, a constant that would broadcast the result larger), so the rewrite never changes
what a model computes, only how fast: in-place arithmetic is the same arithmetic, only the softmax row sum
(a BLAS dot product instead of numpy's pairwise sum) rounds differently.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge.runtime import threads
from onnxforge.runtime.fusion import FusionContext, StepSpec, _readers, _sole_reader
from onnxforge.runtime.kernels.activation import Gelu, gelu_float32, softmax_last_axis_into

# Rows per band below which splitting a Linear across threads costs more than it saves, and the work
# (multiply-adds) below which handing parts to the pool (tens of microseconds) is not worth it at all.
_MIN_ROWS_PER_BAND = 16
# Column bands of a linear layer: at 2 threads and a 128-row input, 0.72x the time of row bands on
# 512x2048 weights that are not in cache (as in a run, where each weight is read once), 0.8x on 512x512.
_MIN_COLUMNS_PER_BAND = 64
# At 512 rows (bert_b4) row bands were as fast or faster (1.09x the time with column bands, in-process A/B).
_MAX_ROWS_FOR_COLUMNS = 256
_MIN_PARALLEL_MACS = 1 << 21
_HEADS_TO_FRONT = [0, 2, 1, 3]


def fuse_transformer(specs: list[StepSpec], ctx: FusionContext) -> list[StepSpec]:
    specs = _fuse_linears(specs, ctx)
    return _fuse_attention(specs, ctx)


def _producers(specs: list[StepSpec]) -> dict[int, int]:
    return {slot: index for index, spec in enumerate(specs) for slot in spec.outs}


def _merged_info(specs: list[StepSpec], members: list[int]) -> Any:
    info = specs[members[0]].info
    for member in members[1:]:
        info = info.merged(specs[member].info)
    return info


def _is_gelu_step(spec: StepSpec) -> bool:
    """The exact-GELU step of ``fusion_pairs.fuse_gelu`` or an opset-20 ``Gelu`` node without the tanh approximation."""
    if len(spec.ins) != 1 or len(spec.outs) != 1:
        return False
    if spec.call is Gelu:
        return True
    return spec.op == "Gelu" and spec.attrs.get("approximate", "none") == "none"


# ----- Linear: MatMul + bias (+ GELU) ---------------------------------------------------------------------
def _fuse_linears(specs: list[StepSpec], ctx: FusionContext) -> list[StepSpec]:
    readers = _readers(specs)
    dropped: set[int] = set()
    for index, matmul in enumerate(specs):
        if matmul.op != "MatMul" or len(matmul.ins) != 2 or len(matmul.outs) != 1 or index in dropped:
            continue
        weight = ctx.constant(matmul.ins[1])
        if weight is None or weight.ndim != 2 or weight.dtype != np.float32 or ctx.constant(matmul.ins[0]) is not None:
            continue
        members, bias, add_call, position = [index], None, None, 0
        add_index = _sole_reader(matmul.outs[0], readers, ctx)
        add = specs[add_index] if add_index is not None else None
        if add is not None and add.op == "Add" and len(add.outs) == 1 and add.kdef is not None and add.kdef.since >= 7:
            if add.ins.count(matmul.outs[0]) == 1:
                position = add.ins.index(matmul.outs[0])
                bias = ctx.constant(add.ins[1 - position])
                if bias is None or bias.dtype != np.float32 or bias.shape != (weight.shape[1],):
                    bias = None
        gelu_call = None
        if bias is not None and add is not None and add_index is not None:
            members.append(add_index)
            add_call = add.call
            gelu_index = _sole_reader(add.outs[0], readers, ctx)
            if gelu_index is not None and _is_gelu_step(specs[gelu_index]):
                members.append(gelu_index)
                gelu_call = specs[gelu_index].call
        call = _linear_call(weight, bias, matmul.call, add_call, position, gelu_call)
        last = specs[members[-1]]
        specs[index] = StepSpec(
            call, _merged_info(specs, members), list(matmul.ins), last.outs, matmul.kdef, matmul.attrs
        )
        dropped.update(members[1:])
    return [spec for index, spec in enumerate(specs) if index not in dropped]


def _linear_call(
    weight: np.ndarray,
    bias: np.ndarray | None,
    matmul_call: Callable[..., Any],
    add_call: Callable[..., Any] | None,
    position: int,
    gelu_call: Callable[..., Any] | None,
) -> Callable[..., np.ndarray]:
    k, n = weight.shape

    def unfused(x: np.ndarray) -> np.ndarray:
        y = matmul_call(x, weight)
        if add_call is not None:
            y = add_call(y, bias) if position == 0 else add_call(bias, y)
        return y if gelu_call is None else gelu_call(y)

    def band(x2: np.ndarray, y: np.ndarray, start: int, stop: int) -> None:
        out = y[start:stop]
        np.matmul(x2[start:stop], weight, out=out)
        if bias is not None:
            out += bias
        if gelu_call is not None:
            gelu_float32(out, out=out)

    def column_band(x2: np.ndarray, y: np.ndarray, start: int, stop: int) -> None:
        out = y[:, start:stop]
        np.matmul(x2, weight[:, start:stop], out=out)
        if bias is not None:
            out += bias[start:stop]
        if gelu_call is not None:
            gelu_float32(out, out=out)

    def linear(x: np.ndarray, _weight: Any = None) -> np.ndarray:
        # The weight's slot stays an input so that profiles list its shape; the call uses its own copy.
        if type(x) is not np.ndarray or x.dtype != np.float32 or x.ndim == 0 or x.shape[-1] != k:
            return unfused(x)
        x2 = x.reshape(-1, k)
        rows = x2.shape[0]
        y = np.empty((rows, n), np.float32)
        workers = threads.workers() if rows * k * n >= _MIN_PARALLEL_MACS else 1
        # Row bands each read the whole weight; with fewer rows than weight columns (a few sequences of
        # tokens) the weight is most of the memory traffic, so column bands each read only their share.
        by_columns = rows < n and rows <= _MAX_ROWS_FOR_COLUMNS
        bands = (
            threads.split(n, workers, _MIN_COLUMNS_PER_BAND)
            if by_columns
            else threads.split(rows, workers, _MIN_ROWS_PER_BAND)
        )
        if len(bands) <= 1:
            band(x2, y, 0, rows)
        else:
            part = column_band if by_columns else band
            threads.parallel([functools.partial(part, x2, y, start, stop) for start, stop in bands])
        return y.reshape(*x.shape[:-1], n)

    return linear


# ----- attention core: MatMul, scale/mask, Softmax, MatMul ------------------------------------------------
class _ScoreOp:
    """One elementwise step on the scores: its original call and constant arguments, and an in-place form."""

    def __init__(self, call: Callable[..., Any], args: list[np.ndarray | None], position: int, kind: str) -> None:
        self.call, self.args, self.position, self.kind = call, args, position, kind
        constants = [a for a in args if a is not None]
        self.shapes = [c.shape for c in constants]
        if kind == "where":
            cond, fill = args[0], args[2 if position == 1 else 1]
            assert cond is not None and fill is not None
            # copyto writes the fill where the kept branch is not the scores.
            self.where = cond if position == 2 else np.logical_not(cond)
            self.value = fill
        else:
            self.value = args[1 - position]

    def unfused(self, scores: np.ndarray) -> np.ndarray:
        args = list(self.args)
        args[self.position] = scores
        return self.call(*args)

    def fits(self, shape: tuple[int, ...], dtype: np.dtype) -> bool:
        """Whether the step can write into scores of this shape and dtype (same result shape, no casting)."""
        return self.value.dtype == dtype and np.broadcast_shapes(shape, *self.shapes) == shape

    def apply_in_place(self, scores: np.ndarray) -> bool:
        """Do the step into ``scores``; False (nothing written) when it does not fit there exactly."""
        if not self.fits(scores.shape, scores.dtype):
            return False
        self._apply(scores, self.value, self.where if self.kind == "where" else None)
        return True

    def apply_to_part(self, scores: np.ndarray, full: tuple[int, ...], part: tuple[slice, ...]) -> None:
        """Do the step into ``scores``, the ``part`` of scores of shape ``full`` (checked with :meth:`fits`)."""
        value = np.broadcast_to(self.value, full)[part]
        where = np.broadcast_to(self.where, full)[part] if self.kind == "where" else None
        self._apply(scores, value, where)

    def _apply(self, scores: np.ndarray, value: np.ndarray, where: np.ndarray | None) -> None:
        if self.kind == "mul":
            scores *= value
        elif self.kind == "div":
            scores /= value
        elif self.kind == "add":
            scores += value
        else:
            np.copyto(scores, value, where=where)


def _score_op(spec: StepSpec, slot: int, ctx: FusionContext) -> _ScoreOp | None:
    """``spec`` as an elementwise step on the scores in ``slot`` with constant other inputs, if it is one."""
    if len(spec.outs) != 1 or spec.kdef is None or spec.ins.count(slot) != 1:
        return None
    position = spec.ins.index(slot)
    args = [None if i == position else ctx.constant(s) for i, s in enumerate(spec.ins)]
    if any(a is None for i, a in enumerate(args) if i != position):
        return None
    if spec.op in ("Mul", "Add") and len(args) == 2 and spec.kdef.since >= 7:
        return _ScoreOp(spec.call, args, position, spec.op.lower())
    if spec.op == "Div" and len(args) == 2 and position == 0 and spec.kdef.since >= 7:
        return _ScoreOp(spec.call, args, position, "div")
    if (
        spec.op == "Where"
        and len(args) == 3
        and position in (1, 2)
        and args[0] is not None
        and args[0].dtype == np.bool_
    ):
        return _ScoreOp(spec.call, args, position, "where")
    return None


def _softmax_axis_is_last(spec: StepSpec) -> bool:
    if spec.op != "Softmax" or spec.kdef is None or len(spec.ins) != 1 or len(spec.outs) != 1:
        return False
    return spec.attrs.get("axis", -1 if spec.kdef.since >= 13 else 1) == -1


def _fuse_attention(specs: list[StepSpec], ctx: FusionContext) -> list[StepSpec]:
    readers = _readers(specs)
    producer = _producers(specs)
    dropped: set[int] = set()
    for index, softmax in enumerate(specs):
        if not _softmax_axis_is_last(softmax) or index in dropped:
            continue
        # Walk back from the Softmax over in-place-able steps to the scores MatMul.
        ops: list[_ScoreOp] = []
        members = [index]
        slot = softmax.ins[0]
        while True:
            source = producer.get(slot)
            if source is None or _sole_reader(slot, readers, ctx) is None or source in dropped:
                break
            if specs[source].op == "MatMul":
                break
            op = _score_op(specs[source], _computed_input(specs[source], ctx), ctx)
            if op is None:
                break
            ops.insert(0, op)
            members.insert(0, source)
            slot = specs[source].ins[op.position]
        first = producer.get(slot)
        if first is None or not _plain_matmul(specs[first]) or first in dropped:
            continue
        if _sole_reader(slot, readers, ctx) is None:
            continue
        second = _sole_reader(softmax.outs[0], readers, ctx)
        if second is None or not _plain_matmul(specs[second]) or specs[second].ins[0] != softmax.outs[0]:
            continue
        if specs[second].ins[1] == softmax.outs[0]:
            continue
        members = [first, *members, second]
        reader = _sole_reader(specs[second].outs[0], readers, ctx)
        heads_to_front = (
            reader is not None
            and specs[reader].op == "Transpose"
            and specs[reader].attrs.get("perm") == _HEADS_TO_FRONT
        )
        call = _attention_call(specs[first].call, ops, softmax.call, specs[second].call, heads_to_front)
        ins = [*specs[first].ins, specs[second].ins[1]]
        specs[first] = StepSpec(call, _merged_info(specs, members), ins, specs[second].outs, specs[first].kdef)
        dropped.update(members[1:])
    return [spec for index, spec in enumerate(specs) if index not in dropped]


def _plain_matmul(spec: StepSpec) -> bool:
    """A MatMul step doing just that (not a Linear this module already fused with a bias or GELU)."""
    return spec.op == "MatMul" and not spec.info.fused and len(spec.ins) == 2 and len(spec.outs) == 1


def _computed_input(spec: StepSpec, ctx: FusionContext) -> int:
    """The one input of ``spec`` that is not a build-time constant (-1 if there is not exactly one)."""
    computed = [slot for slot in spec.ins if ctx.constant(slot) is None]
    return computed[0] if len(computed) == 1 else -1


def _attention_call(
    scores_call: Callable[..., Any],
    ops: list[_ScoreOp],
    softmax_call: Callable[..., Any],
    output_call: Callable[..., Any],
    heads_to_front: bool,
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    def unfused_from(scores: np.ndarray, first: int, v: np.ndarray) -> np.ndarray:
        for op in ops[first:]:
            scores = op.unfused(scores)
        return output_call(softmax_call(scores), v)

    def one_group(
        q: np.ndarray, k: np.ndarray, v: np.ndarray, full: tuple[int, ...], part: tuple[slice, ...], out: np.ndarray
    ) -> None:
        scores = np.matmul(q[part], k[part])
        for op in ops:
            op.apply_to_part(scores, full, part)
        np.matmul(softmax_last_axis_into(scores), v[part], out=out[part])

    def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        groups = _head_groups(q, k, v, ops)
        if groups is not None:
            full = (*q.shape[:-1], k.shape[-1])
            out = _attention_output(full[:-2], full[-2], v.shape[-1], q.dtype, heads_to_front)
            threads.parallel([functools.partial(one_group, q, k, v, full, part, out) for part in groups])
            return out
        scores = scores_call(q, k)
        if type(scores) is not np.ndarray or scores.dtype not in (np.float32, np.float64) or not scores.size:
            return unfused_from(scores, 0, v)
        if not scores.flags.writeable or not scores.flags.c_contiguous:
            scores = np.array(scores, copy=True)
        for position, op in enumerate(ops):
            if not op.apply_in_place(scores):
                return unfused_from(scores, position, v)
        softmax_last_axis_into(scores)
        if type(v) is not np.ndarray or v.dtype != scores.dtype or v.ndim < 2:
            return output_call(scores, v)
        if heads_to_front and scores.ndim == 4 and v.ndim == 4 and v.shape[2] == scores.shape[3]:
            try:
                shape = np.broadcast_shapes(scores.shape[:2], v.shape[:2])
            except ValueError:
                return output_call(scores, v)
            out = _attention_output(shape, scores.shape[2], v.shape[3], scores.dtype, True)
            np.matmul(scores, v, out=out)
            return out
        return output_call(scores, v)

    return attention


def _attention_output(
    lead: tuple[int, ...], rows: int, columns: int, dtype: np.dtype, heads_to_front: bool
) -> np.ndarray:
    """A fresh (*lead, rows, columns) array; with ``heads_to_front`` the (B, H, M, D) view of a (B, M, H, D) one."""
    if heads_to_front and len(lead) == 2:
        return np.empty((lead[0], rows, lead[1], columns), dtype).transpose(_HEADS_TO_FRONT)
    return np.empty((*lead, rows, columns), dtype)


def _head_groups(q: np.ndarray, k: np.ndarray, v: np.ndarray, ops: list[_ScoreOp]) -> list[tuple[slice, ...]] | None:
    """Disjoint (batch, head) index groups, one per intra-op thread, or None to run the whole core at once.

    Only when the three operands are plain float arrays of one dtype with the same leading dims (no
    broadcasting between them) and every score step fits the full scores in place.
    """
    workers = threads.workers()
    if workers <= 1 or any(type(a) is not np.ndarray for a in (q, k, v)) or q.ndim < 3:
        return None
    if q.dtype not in (np.float32, np.float64) or k.dtype != q.dtype or v.dtype != q.dtype:
        return None
    lead = q.shape[:-2]
    if k.shape[:-2] != lead or v.shape[:-2] != lead or k.ndim != q.ndim or v.ndim != q.ndim:
        return None
    if q.shape[-1] != k.shape[-2] or k.shape[-1] != v.shape[-2] or 0 in q.shape or 0 in k.shape or 0 in v.shape:
        return None
    full = (*q.shape[:-1], k.shape[-1])
    if q.size * k.shape[-1] + int(np.prod(full)) * v.shape[-1] < _MIN_PARALLEL_MACS:
        return None
    if not all(op.fits(full, q.dtype) for op in ops):
        return None
    if lead[0] >= workers or len(lead) == 1:
        groups = [(slice(a, b),) for a, b in threads.split(lead[0], workers)]
    else:
        groups = [(slice(i, i + 1), slice(a, b)) for i in range(lead[0]) for a, b in threads.split(lead[1], workers)]
    return groups if len(groups) > 1 else None
