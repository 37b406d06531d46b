"""MaxPool's 2-D window maximum as whole-array passes over flattened images.

NumPy pays ~50 ns per inner loop, and a pass over strided rows of an NCHW image is one inner loop per row:
the separable pool of a 64x112x112 image walks ~10,000 rows of 56-112 floats, which costs more than the
arithmetic. Here a run of whole images, flattened, is reduced with contiguous 1-D passes instead::

    A[q] = max_{j < kw} F[q + j]          (kw - 1 passes: every position's row window)
    B[q] = max_{i < kh} A[q + i * W]      (kh - 1 passes: and its column window)

which computes a window maximum at every position, ``s_h * s_w`` times more than the outputs need, at
SIMD speed; the outputs are then one strided view of ``B`` (top-left corner ``q = r * W + c``), copied out.
Positions whose window crosses a row or image edge hold junk, but only outputs whose whole window lies
inside the image are read. So this path takes pools none of whose windows reach into the pads (unpadded
ones, as in SqueezeNet, VGG, AlexNet); computing the edge strips of a padded pool apart, tap by tap, cost
more than the flat passes saved. At 2 intra-op threads each thread pools half of the images.

A padded pool on small images (Inception's 3x3 stride-2 pools with an end pad, at 56x56 and below) takes
the same passes over a copy whose pads repeat the nearest image row or column (:func:`max_windows_edge`):
where every window holds at least one image element on each axis, the repeated value is one the window
already holds, so the maximum is that of the -inf padding (NaN included). The copy costs a pass; below 64
columns the row-wise path's per-row loops cost more (192x56x56: 593 -> 492 us, 576x14x14: 315 -> 223,
1024x7x7 stride 1: 450 -> 249), at 112 columns less (64x112x112: 620 vs 743), hence the width limit.
"""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.kernels._spatial import strided_view
from onnxforge.runtime.threads import parallel, split, workers

# Smaller inputs keep the row-wise path (_pool_windows): the flat passes' fixed costs would not pay.
_MIN_SIZE = 50_000
# Inputs of at least this many elements are split across the intra-op threads (see _pool_windows).
_PARALLEL_MIN_SIZE = 100_000
# Padded pools take the edge-repeating copy up to this image width (see the module docstring).
_EDGE_MAX_WIDTH = 64
# A run of images over _CHUNKED_BYTES is pooled in runs of at most _RUN_BYTES, whose passes' temporaries stay in
# the 2 MB L2 (SqueezeNet's first pool, 64x111x111 after its conv: 574 -> 456 us in runs of 16 images; runs of
# 1.5 MB and less gained nothing, smaller runs of small images lost to the calls' own cost). Whole models,
# in-process A/B: SqueezeNet 0.972-0.976x the time at 1 thread (1.006 at 2), VGG-19 0.995 / 0.992.
_CHUNKED_BYTES, _RUN_BYTES = 2 << 20, 800_000


def _inside(n: int, k: int, s: int, begin: int, out: int) -> bool:
    """Whether every output's whole window ``[o * s - begin, o * s - begin + k)`` lies in ``[0, n)``."""
    return begin == 0 and (out - 1) * s + k <= n


def max_windows_flat(
    x: np.ndarray,
    k: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
    begins: tuple[int, ...],
    out: tuple[int, ...],
) -> np.ndarray | None:
    """The window maxima of ``x`` (N, C, H, W), or None where this path does not apply: not 2-D, dilated,
    not C-contiguous, small, or some window reaching into the pads."""
    if len(k) != 2 or tuple(d) != (1, 1) or x.dtype.kind not in "fiu" or not x.flags.c_contiguous or x.size < _MIN_SIZE:
        return None
    (h, w), (oh, ow) = x.shape[2:], out
    if not (_inside(h, k[0], s[0], begins[0], oh) and _inside(w, k[1], s[1], begins[1], ow)):
        return None  # some window reaches into the pads (computing those edges apart cost more than it saved)
    planes = x.shape[0] * x.shape[1]
    xp = x.reshape(planes, h, w)
    y = np.empty((*x.shape[:2], oh, ow), dtype=x.dtype)
    yp = y.reshape(planes, oh, ow)
    parts = min(workers(), planes) if x.size >= _PARALLEL_MIN_SIZE else 1
    runs = split(planes, parts)
    parallel([lambda p0=p0, p1=p1: _pool_runs(xp[p0:p1], yp[p0:p1], k, s) for p0, p1 in runs])
    return y


def _pool_runs(x: np.ndarray, y: np.ndarray, k: tuple[int, ...], s: tuple[int, ...]) -> None:
    """:func:`_pool_run` over runs of at most ``_RUN_BYTES`` of images, when the whole is over ``_CHUNKED_BYTES``."""
    planes = x.shape[0]
    per_plane = x[0].nbytes or 1
    if planes * per_plane <= _CHUNKED_BYTES:
        _pool_run(x, y, k, s)
        return
    step = max(1, _RUN_BYTES // per_plane)
    for p0 in range(0, planes, step):
        _pool_run(x[p0 : p0 + step], y[p0 : p0 + step], k, s)


def max_windows_edge(
    x: np.ndarray,
    k: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
    begins: tuple[int, ...],
    out: tuple[int, ...],
) -> np.ndarray | None:
    """The window maxima of a padded pool of small 2-D images through an edge-repeating copy and
    :func:`max_windows_flat`, or None where that is not exact or not worth it (see the module docstring)."""
    if len(k) != 2 or tuple(d) != (1, 1) or x.ndim != 4 or x.shape[3] > _EDGE_MAX_WIDTH or x.size < _MIN_SIZE:
        return None
    if x.dtype.kind not in "fiu" or not x.flags.c_contiguous:
        return None
    spatial = x.shape[2:]
    for n, ki, si, b, o in zip(spatial, k, s, begins, out):
        # Every window must hold an image element: it starts at or before the last one and ends past the first.
        if b < 0 or b > ki - 1 or (o - 1) * si - b > n - 1:
            return None
    needed = [(o - 1) * si + ki for o, si, ki in zip(out, s, k)]
    (top, left), (h, w) = begins, (min(spatial[0], needed[0] - begins[0]), min(spatial[1], needed[1] - begins[1]))
    xp = np.empty((*x.shape[:2], *needed), dtype=x.dtype)
    rows = slice(top, top + h)
    xp[:, :, rows, left : left + w] = x[:, :, :h, :w]
    xp[:, :, rows, :left] = x[:, :, :h, :1]
    xp[:, :, rows, left + w :] = x[:, :, :h, w - 1 : w]
    xp[:, :, :top] = xp[:, :, top : top + 1]
    xp[:, :, top + h :] = xp[:, :, top + h - 1 : top + h]
    return max_windows_flat(xp, k, s, d, (0, 0), out)


def _pool_run(x: np.ndarray, y: np.ndarray, k: tuple[int, ...], s: tuple[int, ...]) -> None:
    """``y`` (P, oh, ow) = the window maxima of ``x`` (P, H, W), a contiguous run of whole images, no pads read."""
    (kh, kw), (sh, sw) = k, s
    planes, h, w = x.shape
    flat = x.reshape(-1)
    a = np.maximum(flat[: flat.size - kw + 1], flat[1 : flat.size - kw + 2]) if kw > 1 else flat
    for j in range(2, kw):
        np.maximum(a, flat[j : j + a.size], out=a)
    size = a.size - (kh - 1) * w
    b = np.maximum(a[:size], a[w : w + size]) if kh > 1 else a
    for i in range(2, kh):
        np.maximum(b, a[i * w : i * w + size], out=b)
    item = b.itemsize
    # Output (o_h, o_w)'s window starts at q = o_h * s_h * W + o_w * s_w, one view over the whole run.
    y[:] = strided_view(b, y.shape, (h * w * item, sh * w * item, sw * item))
