"""ConvTranspose: the adjoint of Conv, ``Yfull[n, m, i * strides + j * dilations] += X[n, c, i] * W[c, m, j]``.

Computed as one batched matmul ``W[g]^T (Mg*K x Cg) @ X[n, g] (Cg x P)`` giving every input pixel's
contribution for every kernel position, then col2im: one strided scatter-add per kernel position into
the full output, which is finally cropped by the begin pad (and zero-extended by ``output_padding``).

Output size per axis: ``strides * (in - 1) + output_padding + dilations * (k - 1) + 1 - pad_begin - pad_end``.
With ``output_shape`` or SAME auto_pad the total pad is derived from the wanted size, the odd unit going
to the begin pad except for SAME_UPPER (onnxruntime's split; pads given with output_shape are ignored).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._spatial import compute_dtype, explicit_pads, kernel_from, prod, spatial_params
from onnxforge.runtime.registry import kernel


class _PackedTransposeWeight:
    """W (C, Mg, *k) as (G, Mg*K, Cg): the left operand of the per-group matmul, in the compute dtype."""

    __slots__ = ("dtype", "group", "kernel", "m", "matrix")

    def __init__(self, w: np.ndarray, group: int) -> None:
        if w.ndim < 3:
            raise InvalidArgument(f"ConvTranspose weight must be (C, M/group, k1, ...), got shape {list(w.shape)}")
        c, mg = int(w.shape[0]), int(w.shape[1])
        if group < 1 or c % group:
            raise InvalidArgument(f"ConvTranspose: {c} input channels are not divisible by group={group}")
        self.dtype = compute_dtype(w.dtype)
        self.group, self.m, self.kernel = group, mg * group, tuple(int(v) for v in w.shape[2:])
        wc = w.astype(self.dtype, copy=False).reshape(group, c // group, mg * prod(self.kernel))
        self.matrix = np.ascontiguousarray(wc.transpose(0, 2, 1))


def _trunc_half(total: int) -> int:
    # C integer division, as onnxruntime splits a (possibly negative) total pad.
    return int(total / 2)


def _geometry(
    in_shape: Sequence[int],
    k: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
    auto_pad: str,
    pads: Sequence[int] | None,
    output_padding: Sequence[int] | None,
    output_shape: Sequence[int] | None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(pad begins, output shape)."""
    rank = len(in_shape)
    adj = tuple(int(v) for v in output_padding) if output_padding else (0,) * rank
    if len(adj) != rank:
        raise InvalidArgument(f"output_padding {list(adj)} must have {rank} entries")
    full = [si * (n - 1) + a + di * (ki - 1) + 1 for n, ki, si, di, a in zip(in_shape, k, s, d, adj)]
    if output_shape:
        wanted = tuple(int(v) for v in output_shape[-rank:])
        if len(wanted) != rank:
            raise InvalidArgument(f"output_shape {list(output_shape)} must give the {rank} spatial sizes")
        totals = [max(0, f - o) for f, o in zip(full, wanted)]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # in * strides, except that (as in onnxruntime) a kernel narrower than the stride never pads
        # negatively: the output then stays at the full scattered size.
        totals = [max(0, f - n * si) for f, n, si in zip(full, in_shape, s)]
        wanted = tuple(f - t for f, t in zip(full, totals))
    elif auto_pad in ("NOTSET", "VALID", ""):
        begins, ends = explicit_pads(pads if auto_pad != "VALID" else None, rank)
        out = tuple(f - b - e for f, b, e in zip(full, begins, ends))
        if min(out, default=1) < 1:
            raise InvalidArgument(
                f"ConvTranspose pads {list(pads or [])} leave an empty output for input {list(in_shape)}"
            )
        return begins, out
    else:
        raise InvalidArgument(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got '{auto_pad}'")
    if auto_pad == "SAME_UPPER":
        begins = tuple(_trunc_half(t) for t in totals)
    else:
        begins = tuple(t - _trunc_half(t) for t in totals)
    return begins, wanted


def _conv_transpose(
    x: np.ndarray,
    pw: _PackedTransposeWeight,
    bias: np.ndarray | None,
    *,
    auto_pad: str,
    dilations: Sequence[int] | None,
    output_padding: Sequence[int] | None,
    output_shape: Sequence[int] | None,
    pads: Sequence[int] | None,
    strides: Sequence[int] | None,
) -> np.ndarray:
    rank = len(pw.kernel)
    if x.ndim != rank + 2:
        raise InvalidArgument(f"ConvTranspose input must have rank {rank + 2} to match the weight, got {list(x.shape)}")
    n, c = x.shape[:2]
    group, m = pw.group, pw.m
    if c != pw.matrix.shape[2] * group:
        raise InvalidArgument(f"ConvTranspose input has {c} channels, weight expects {pw.matrix.shape[2] * group}")
    in_shape = x.shape[2:]
    k, s, d = spatial_params(rank, pw.kernel, strides, dilations)
    begins, out = _geometry(in_shape, k, s, d, auto_pad, pads, output_padding, output_shape)

    xc = x.astype(pw.dtype, copy=False).reshape(n, group, c // group, prod(in_shape))
    if group == 1:
        cols = np.matmul(pw.matrix[0], xc[:, 0])
    else:
        cols = np.matmul(pw.matrix, xc)
    cols = cols.reshape(n, m, *k, *in_shape)

    # The buffer spans every scattered position and the whole output window, whichever reaches further.
    lows = [min(0, b) for b in begins]
    highs = [
        max((ni - 1) * si + di * (ki - 1) + 1, b + o) for ni, ki, si, di, b, o in zip(in_shape, k, s, d, begins, out)
    ]
    buf = np.zeros((n, m, *(h - lo for h, lo in zip(highs, lows))), dtype=pw.dtype)
    lead = (slice(None), slice(None))
    for offset in itertools.product(*(range(ki) for ki in k)):
        target = tuple(
            slice(j * di - lo, j * di - lo + (ni - 1) * si + 1, si)
            for j, di, lo, ni, si in zip(offset, d, lows, in_shape, s)
        )
        buf[lead + target] += cols[lead + offset]
    window = tuple(slice(b - lo, b - lo + o) for b, lo, o in zip(begins, lows, out))
    y = buf if buf.shape[2:] == out else np.ascontiguousarray(buf[lead + window])
    if bias is not None:
        if bias.shape != (m,):
            raise InvalidArgument(f"ConvTranspose bias must have shape [{m}], got {list(bias.shape)}")
        y += bias.astype(pw.dtype, copy=False).reshape(m, *(1,) * rank)
    return y if y.dtype == x.dtype else y.astype(x.dtype)


def _prepare_conv_transpose(
    constants: list[Any], *, group: int = 1, kernel_shape: list[int] | None = None, **attrs: Any
) -> Callable[..., np.ndarray] | None:
    w = constants[1] if len(constants) > 1 else None
    if not isinstance(w, np.ndarray):
        return None
    kernel_from(kernel_shape, w.shape)
    packed = _PackedTransposeWeight(w, group)
    b_const = constants[2] if len(constants) > 2 and isinstance(constants[2], np.ndarray) else None
    options = {
        name: attrs.get(name, default)
        for name, default in (
            ("auto_pad", "NOTSET"),
            ("dilations", None),
            ("output_padding", None),
            ("output_shape", None),
            ("pads", None),
            ("strides", None),
        )
    }

    def conv_transpose_packed(X: np.ndarray, W: np.ndarray, B: np.ndarray | None = None) -> np.ndarray:
        return _conv_transpose(X, packed, b_const if b_const is not None else B, **options)

    return conv_transpose_packed


@kernel("ConvTranspose", since=1, prepare=_prepare_conv_transpose)
def ConvTranspose(
    X: np.ndarray,
    W: np.ndarray,
    B: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: list[int] | None = None,
    group: int = 1,
    kernel_shape: list[int] | None = None,
    output_padding: list[int] | None = None,
    output_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    kernel_from(kernel_shape, W.shape)
    return _conv_transpose(
        X,
        _PackedTransposeWeight(W, group),
        B,
        auto_pad=auto_pad,
        dilations=dilations,
        output_padding=output_padding,
        output_shape=output_shape,
        pads=pads,
        strides=strides,
    )
