"""MaxPool's separable window maximum on the unpadded input.

``Y[o] = max_j X[o * s + j * d - begin]`` over the positions inside the input, one spatial axis at a time.
A pad reads -inf for MaxPool, so it never wins unless a window holds nothing else; when at least one kernel
tap reads inside the input for every output (any pad smaller than the kernel, the usual case), the pads can be
skipped: that tap starts the result, and every other tap updates only the outputs whose position it reads
inside. This saves the padded copy of the whole input, and the first two taps write the result directly
(``np.maximum(a, b)``) instead of copying one: on a 3x3 stride-2 pool of a 24x112x112 image, ~2x faster.
Axes go first to last: the first pass, over the whole input, then reads whole contiguous rows. Channels are
independent, so at 2 intra-op threads each thread pools half of them (NumPy releases the GIL in its loops).
"""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.threads import parallel, split, workers

# Inputs of at least this many elements are split across the intra-op threads: smaller parts ran no faster
# side by side than one after the other (see _im2col.PARALLEL_MIN_MACS).
_PARALLEL_MIN_SIZE = 100_000


def _covered(n: int, begin: int, out: int, s: int, position: int) -> tuple[int, int]:
    """The outputs ``[lo, hi)`` whose window position ``o * s + position - begin`` lies in ``[0, n)``."""
    offset = position - begin
    lo = max(0, -(offset // s))  # ceil(-offset / s)
    hi = min(out, (n - 1 - offset) // s + 1) if n - 1 - offset >= 0 else 0
    return lo, max(lo, hi)


def _axis_view(x: np.ndarray, axis: int, start: int, count: int, s: int) -> np.ndarray:
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, start + (count - 1) * s + 1, s)
    return x[tuple(index)]


def _max_along(
    x: np.ndarray, axis: int, k: int, s: int, d: int, begin: int, out: int, into: np.ndarray | None = None
) -> np.ndarray | None:
    n = x.shape[axis]
    spans = [_covered(n, begin, out, s, j * d) for j in range(k)]
    full = [j for j, (lo, hi) in enumerate(spans) if lo == 0 and hi == out]
    if not full:
        return None

    def view(j: int, lo: int, hi: int) -> np.ndarray:
        return _axis_view(x, axis, lo * s + j * d - begin, hi - lo, s)

    first = full[0]
    if len(full) > 1:
        y = np.maximum(view(first, 0, out), view(full[1], 0, out), out=into)
        done = {first, full[1]}
    else:
        y = view(first, 0, out).copy() if into is None else into
        if into is not None:
            np.copyto(into, view(first, 0, out))
        done = {first}
    for j, (lo, hi) in enumerate(spans):
        if j in done or hi <= lo:
            continue
        target = _axis_view(y, axis, lo, hi - lo, 1)
        np.maximum(target, view(j, lo, hi), out=target)
    return y


def max_windows_unpadded(
    x: np.ndarray,
    k: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
    begins: tuple[int, ...],
    out: tuple[int, ...],
) -> np.ndarray | None:
    """The window maxima of ``x`` (N, C, *spatial), or None when some output's window lies wholly in the pads
    (the caller then pads). Big inputs are cut into groups of channels on the intra-op threads."""
    for axis in range(len(k)):
        spans = [_covered(x.shape[2 + axis], begins[axis], out[axis], s[axis], j * d[axis]) for j in range(k[axis])]
        if (0, out[axis]) not in spans:
            return None
    parts = min(workers(), x.shape[1]) if x.size >= _PARALLEL_MIN_SIZE else 1
    if parts <= 1:
        return _windows(x, k, s, d, begins, out)
    y = np.empty((*x.shape[:2], *out), dtype=x.dtype)

    def channels(c0: int, c1: int) -> None:
        _windows(x[:, c0:c1], k, s, d, begins, out, y[:, c0:c1])

    parallel([lambda c0=c0, c1=c1: channels(c0, c1) for c0, c1 in split(x.shape[1], parts)])
    return y


def _windows(
    x: np.ndarray,
    k: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
    begins: tuple[int, ...],
    out: tuple[int, ...],
    into: np.ndarray | None = None,
) -> np.ndarray:
    """The window maxima of ``x``, one axis after the other; the last axis writes into ``into`` if given."""
    y = x
    last = len(k) - 1
    for axis in range(len(k)):
        target = into if axis == last else None
        reduced = _max_along(y, 2 + axis, k[axis], s[axis], d[axis], begins[axis], out[axis], target)
        assert reduced is not None  # max_windows_unpadded checked that every axis has a full-coverage tap
        y = reduced
    if into is not None:
        return into
    return y if y is not x else y.copy()
