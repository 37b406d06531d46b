"""Shared geometry of windowed ops (Conv, ConvTranspose, pools): pads, output sizes, padded inputs.

For a spatial axis with input size ``n``, kernel ``k``, stride ``s``, dilation ``d`` and pads ``(b, e)`` the
window extent is ``dk = d * (k - 1) + 1`` and output ``o`` reads padded positions ``o * s + j * d``,
``j < k``; the number of outputs is ``floor((n + b + e - dk) / s) + 1`` (``ceil`` in pools' ceil_mode).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from onnxforge._errors import InvalidArgument

Ints = tuple[int, ...]


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype arithmetic runs in: float32/float64 natively, everything narrower via float32."""
    if dtype == np.float64 or dtype == np.float32:
        return dtype
    return np.dtype(np.float32)


def spatial_params(
    rank: int, kernel: Sequence[int], strides: Sequence[int] | None, dilations: Sequence[int] | None
) -> tuple[Ints, Ints, Ints]:
    """Kernel, strides and dilations as tuples of ``rank`` ints, with the spec's defaults of 1."""
    k = tuple(int(v) for v in kernel)
    s = tuple(int(v) for v in strides) if strides else (1,) * rank
    d = tuple(int(v) for v in dilations) if dilations else (1,) * rank
    if not len(k) == len(s) == len(d) == rank:
        raise InvalidArgument(
            f"kernel_shape {list(k)}, strides {list(s)} and dilations {list(d)} must each have {rank} entries "
            "(one per spatial axis)"
        )
    if min(s, default=1) < 1 or min(d, default=1) < 1:
        raise InvalidArgument(f"strides {list(s)} and dilations {list(d)} must be positive")
    return k, s, d


def explicit_pads(pads: Sequence[int] | None, rank: int) -> tuple[Ints, Ints]:
    if not pads:
        return (0,) * rank, (0,) * rank
    if len(pads) != 2 * rank:
        raise InvalidArgument(f"pads {list(pads)} must have {2 * rank} entries (begins then ends)")
    return tuple(int(p) for p in pads[:rank]), tuple(int(p) for p in pads[rank:])


def same_pads(auto_pad: str, total: int) -> tuple[int, int]:
    """Split a total pad: SAME_UPPER puts the odd one at the end, SAME_LOWER at the beginning."""
    small = total // 2
    return (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)


def conv_geometry(
    auto_pad: str, in_shape: Sequence[int], k: Ints, s: Ints, d: Ints, pads: Sequence[int] | None
) -> tuple[Ints, Ints, Ints]:
    """(pad begins, pad ends, output shape) of a convolution."""
    rank = len(in_shape)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends, out = [], [], []
        for n, ki, si, di in zip(in_shape, k, s, d):
            o = -(-n // si)
            b, e = same_pads(auto_pad, max(0, (o - 1) * si + di * (ki - 1) + 1 - n))
            begins.append(b)
            ends.append(e)
            out.append(o)
        return tuple(begins), tuple(ends), tuple(out)
    if auto_pad == "VALID":
        begins, ends = (0,) * rank, (0,) * rank
    elif auto_pad in ("NOTSET", ""):
        begins, ends = explicit_pads(pads, rank)
    else:
        raise InvalidArgument(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got '{auto_pad}'")
    out = tuple(
        (n + b + e - di * (ki - 1) - 1) // si + 1 for n, b, e, ki, si, di in zip(in_shape, begins, ends, k, s, d)
    )
    if min(out, default=1) < 1:
        raise InvalidArgument(
            f"input spatial shape {list(in_shape)} is too small for kernel {list(k)} with dilations {list(d)} "
            f"and pads {list(begins) + list(ends)}"
        )
    return begins, ends, out


def pool_geometry(
    auto_pad: str, in_shape: Sequence[int], k: Ints, s: Ints, d: Ints, pads: Sequence[int] | None, ceil_mode: int
) -> tuple[Ints, Ints, Ints]:
    """(pad begins, pad ends, output shape) of a pooling op, with onnxruntime's rules.

    SAME pads are sized from the undilated kernel (as onnxruntime does); in ceil_mode a last window that
    would start beyond the input and the begin pad is dropped.
    """
    rank = len(in_shape)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for n, ki, si in zip(in_shape, k, s):
            b, e = same_pads(auto_pad, max(0, (-(-n // si) - 1) * si + ki - n))
            begins.append(b)
            ends.append(e)
        begins_t, ends_t, ceil_mode = tuple(begins), tuple(ends), 0
    elif auto_pad == "VALID":
        begins_t, ends_t = (0,) * rank, (0,) * rank
    elif auto_pad in ("NOTSET", ""):
        begins_t, ends_t = explicit_pads(pads, rank)
    else:
        raise InvalidArgument(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got '{auto_pad}'")
    out = []
    for n, b, e, ki, si, di in zip(in_shape, begins_t, ends_t, k, s, d):
        span = n + b + e - di * (ki - 1) - 1
        if ceil_mode:
            o = -(-span // si) + 1
            if (o - 1) * si >= n + b:
                o -= 1
        else:
            o = span // si + 1
        out.append(o)
    if min(out, default=1) < 1:
        raise InvalidArgument(f"input spatial shape {list(in_shape)} is too small for kernel {list(k)}")
    return begins_t, ends_t, tuple(out)


def strided_view(base: np.ndarray, shape: Sequence[int], strides: Sequence[int], offset: int = 0) -> np.ndarray:
    """A read-only view of ``base``, starting ``offset`` bytes in, with the given byte ``strides`` (which must
    stay inside ``base``: NumPy checks that for a contiguous base).

    ``np.ndarray(buffer=...)`` is ~7x cheaper per call than ``as_strided``, which goes through
    ``__array_interface__``; it needs a C-contiguous base, so other bases take ``as_strided``.
    """
    if base.flags.c_contiguous:
        view = np.ndarray(tuple(shape), base.dtype, base, offset, tuple(strides))
        view.flags.writeable = False
        return view
    start = base.reshape(-1)[offset // base.itemsize :] if offset else base
    return as_strided(start, shape=tuple(shape), strides=tuple(strides), writeable=False)


def pad_for_windows(
    x: np.ndarray, begins: Ints, out: Ints, k: Ints, s: Ints, d: Ints, value: float | int = 0
) -> np.ndarray:
    """``x`` padded on its spatial axes so that every window of every output lies inside.

    The end pad is what the windows need (it may be more than the declared pad in ceil_mode, or less
    when the declared pad is never read); negative pads crop.
    """
    spatial = x.shape[2:]
    needed = [(o - 1) * si + di * (ki - 1) + 1 for o, ki, si, di in zip(out, k, s, d)]
    ends = [need - b - n for need, b, n in zip(needed, begins, spatial)]
    if all(b == 0 for b in begins) and all(e <= 0 for e in ends):
        if all(e == 0 for e in ends):
            return x
        return x[(slice(None), slice(None), *(slice(0, need) for need in needed))]
    crop = tuple(slice(max(0, -b), n + min(0, e)) for b, e, n in zip(begins, ends, spatial))
    source = x[(slice(None), slice(None), *crop)]
    padded = np.full((*x.shape[:2], *needed), value, dtype=x.dtype)
    target = tuple(slice(max(0, b), max(0, b) + c.stop - c.start) for b, c in zip(begins, crop))
    padded[(slice(None), slice(None), *target)] = source
    return padded


def window_slice(offset: Sequence[int], out: Ints, s: Ints, d: Ints, lead: int = 2) -> tuple[slice, ...]:
    """The strided slice of a padded input that kernel position ``offset`` reads for every output."""
    return (slice(None),) * lead + tuple(
        slice(j * di, j * di + (o - 1) * si + 1, si) for j, o, si, di in zip(offset, out, s, d)
    )


def window_counts(n: int, begin: int, end: int, o: int, k: int, s: int, d: int, include_pad: bool) -> np.ndarray:
    """Per output of one axis, how many window positions are averaged over (for AveragePool/LpPool).

    With ``include_pad`` a position counts if it lies in the input or the declared pads; otherwise only
    positions inside the input count. Positions beyond the declared end pad (ceil_mode) never count.
    """
    positions = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d
    limit_low, limit_high = (0, n + begin + end) if include_pad else (begin, begin + n)
    return ((positions >= limit_low) & (positions < limit_high)).sum(axis=1)


def kernel_from(kernel_shape: Sequence[int] | None, w_shape: Sequence[int]) -> Ints:
    """kernel_shape if given, else the weight's spatial dims (checked to agree)."""
    inferred = tuple(int(v) for v in w_shape[2:])
    if kernel_shape:
        given = tuple(int(v) for v in kernel_shape)
        if given != inferred:
            raise InvalidArgument(
                f"kernel_shape {list(given)} does not match the weight's spatial shape {list(inferred)}"
            )
    return inferred


def prod(values: Sequence[int]) -> int:
    return math.prod(values)
