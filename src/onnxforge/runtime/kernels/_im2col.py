"""im2col convolutions: the strided windows of the padded input copied to columns, multiplied by the packed
weight with BLAS (see :mod:`onnxforge.runtime.kernels.conv` for the strategy choice).

- :func:`im2col` copies a band of output rows at a time (bands of a few MB stay in cache), the bands of a
  batch spread over the intra-op threads;
- :func:`im2col_flat` works on a batch of small stride-1 images flattened per channel (plain row copies);
- :func:`im2col_split_channels` splits one image's input channels, not its output rows, across the
  threads when the image has few output pixels (the deep 7x7 and 14x14 layers of ResNets): each thread
  multiplies its channels' columns by its slice of the weight and the partial products are summed. Split
  by rows, such a GEMM is cut into two of a few dozen columns each, which BLAS runs far below its peak.
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from onnxforge.runtime.kernels._spatial import prod, strided_view
from onnxforge.runtime.threads import parallel, split, workers

if TYPE_CHECKING:
    from onnxforge.runtime.kernels._packed_weight import PackedWeight

# Size of one im2col band (see im2col).
COLS_BYTES = 4 << 20
# Column matrices of at most this many floats (per image, at most 4 images) go through im2col_small.
SMALL_COLS = 16_384
# Below this many multiply-adds a conv runs in one thread: a hand-off costs little (~3 us, see _pool), but
# parts under ~100 us ran no faster side by side than one after the other (an 80 us GEMM took 86 us as two
# halves on two threads: each GIL hand-back between NumPy calls can wake a sleeping thread, tens of us on
# these VMs); with all split thresholds at 1/6 or at twice their values the small CNNs ran slower.
PARALLEL_MIN_MACS = 6_000_000
# im2col_split_channels pays up to this many output pixels per image (measured at 2 threads, ResNet-18's
# 3x3 layers: 7x7x512 0.73x, 14x14x256 0.84x the time of row bands; 28x28x128 and 56x56x64 the same).
SPLIT_CHANNELS_MAX_PIXELS = 256


# Per-thread scratch buffers, reused across calls: glibc hands multi-MB blocks back to the OS on free, and
# faulting them in again on every call cost more than the arithmetic on small and medium layers.
_SCRATCH = threading.local()


def scratch(key: str, shape: tuple[int, ...], dtype: np.dtype, zero: bool = False) -> np.ndarray:
    """A C-contiguous work array of ``shape`` that no caller may keep past its own kernel call."""
    size = prod(shape)
    buf = getattr(_SCRATCH, key, None)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(max(size, 1), dtype=dtype)
        setattr(_SCRATCH, key, buf)
    view = buf[:size].reshape(shape)
    if zero:
        view.fill(0)
    return view


def flat_grid(out: tuple[int, ...], k: tuple[int, ...], d: tuple[int, ...]) -> list[int]:
    """The padded image shape im2col_flat works on: what the windows of the outputs reach."""
    return [o + di * (ki - 1) for o, ki, di in zip(out, k, d)]


def flat_overhead(out: tuple[int, ...], k: tuple[int, ...], d: tuple[int, ...]) -> float:
    return prod(flat_grid(out, k, d)) / max(1, prod(out))


class FlatImages(NamedTuple):
    """A batch zero-padded and flattened per channel (see :func:`flat_images`)."""

    flat: np.ndarray  # (C, N * image + spare row): scratch, valid until the caller's kernel call returns
    grid: list[int]  # the padded image shape the windows of the outputs reach
    offsets: list[int]  # per kernel position, where its run starts in a channel's row
    length: int  # how many consecutive grid positions hold every real output


def flat_images(
    x: np.ndarray, begins: tuple[int, ...], out: tuple[int, ...], k: tuple[int, ...], d: tuple[int, ...]
) -> FlatImages:
    """The batch laid out ``(C, N, *grid)``, zero-padded and flattened per channel, so that the inputs a
    stride-1 kernel position meets for a run of consecutive outputs are the slice ``flat[:, off : off + L]``.
    Outputs live on the padded grid: those at the right and bottom edges are junk (runs that wrap into the
    next row or image) and get cropped by the caller."""
    n, c = x.shape[:2]
    grid = flat_grid(out, k, d)
    image = prod(grid)
    steps = [prod(grid[i + 1 :]) for i in range(len(grid))]
    # Real outputs only read inside their own image; the junk ones of the last image spill past it by less
    # than one row, hence the spare row at the end.
    flat = scratch("padded", (c, n * image + steps[0]), x.dtype, zero=True)
    padded = flat[:, : n * image].reshape(c, n, *grid)
    crop, target = [], []
    for size, b, o, ki, di in zip(x.shape[2:], begins, out, k, d):
        lo, hi = max(0, -b), min(size, o + di * (ki - 1) - b)
        crop.append(slice(lo, hi))
        target.append(slice(lo + b, hi + b))
    padded[(slice(None), slice(None), *target)] = x[(slice(None), slice(None), *crop)].swapaxes(0, 1)
    offsets = [
        sum(j * di * st for j, di, st in zip(tap, d, steps)) for tap in itertools.product(*(range(ki) for ki in k))
    ]
    return FlatImages(flat, grid, offsets, (n - 1) * image + out[0] * steps[0])


def windows(
    xp: np.ndarray, out: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], d: tuple[int, ...]
) -> np.ndarray:
    """The read-only view ``(N, C, *k, *out)`` of a padded input (N, C, *spatial): element ``[n, c, j.., o..]``
    is ``xp[n, c, o * s + j * d]``, what kernel position ``j`` meets for output ``o``."""
    sn, sc, *ss = xp.strides
    return strided_view(
        xp,
        (*xp.shape[:2], *k, *out),
        (sn, sc, *(st * di for st, di in zip(ss, d)), *(st * si for st, si in zip(ss, s))),
    )


def im2col_flat(
    x: np.ndarray,
    pw: PackedWeight,
    begins: tuple[int, ...],
    out: tuple[int, ...],
    k: tuple[int, ...],
    d: tuple[int, ...],
) -> np.ndarray:
    """Stride-1 im2col on flattened padded images: every kernel position is one contiguous run per channel.

    The batch is laid out as ``(C, N, *grid)`` and flattened per channel, so the column block of kernel
    position j is the slice ``flat[:, off_j : off_j + L]``: plain row copies instead of the many short
    strided copies of :func:`im2col`. Outputs land on the padded grid (junk at the right and bottom edges,
    from runs that wrap into the next row or image) and are cropped at the end.
    """
    n, c = x.shape[:2]
    flat, grid, offsets, length = flat_images(x, begins, out, k, d)
    taps = len(offsets)
    rows = c * taps
    y = scratch("grid_out", (pw.m, n * prod(grid)), pw.dtype)
    chunk = max(256, COLS_BYTES // ((rows + 1) * x.itemsize))
    parts = workers() if pw.m * rows * length >= PARALLEL_MIN_MACS else 1
    chunk = min(chunk, max(256, -(-length // parts)))
    starts = list(range(0, length, chunk))

    def columns(first: int, last: int) -> None:
        for p0 in starts[first:last]:
            p1 = min(length, p0 + chunk)
            cols = scratch("cols", (rows + pw.folded, p1 - p0), pw.dtype)
            if pw.folded:
                cols[rows] = 1
            per_tap = cols[:rows].reshape(c, taps, p1 - p0)
            for tap, off in enumerate(offsets):
                per_tap[:, tap] = flat[:, off + p0 : off + p1]
            np.matmul(pw.matrix[0], cols, out=y[:, p0:p1])

    parallel([lambda a=a, b=b: columns(a, b) for a, b in split(len(starts), parts)])
    full = y.reshape(pw.m, n, *grid)[(slice(None), slice(None), *(slice(0, o) for o in out))]
    return full.swapaxes(0, 1).copy()  # always a copy: y is scratch that the next call reuses


def im2col_small(
    xp: np.ndarray,
    pw: PackedWeight,
    out: tuple[int, ...],
    k: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
) -> np.ndarray:
    """:func:`im2col` for a one-group conv whose column matrix is small (``SMALL_COLS`` floats or fewer): the
    windows of each image copied at once and one product, none of the band and thread bookkeeping, which costs
    more than the arithmetic here (the bundled digits model's 1 -> 16 channel 3x3 conv on one 8x8 image: ~20 us
    of ~23)."""
    n, c = xp.shape[:2]
    rows, pixels = c * prod(k), prod(out)
    view = windows(xp, out, k, s, d)
    cols = scratch("cols", (rows + pw.folded, pixels), pw.dtype)
    if pw.folded:
        cols[rows] = 1
    y = np.empty((n, pw.m, pixels), dtype=pw.dtype)
    target = cols[:rows].reshape(c, *k, *out)
    for item in range(n):
        np.copyto(target, view[item])
        np.matmul(pw.matrix[0], cols, out=y[item])
    return y.reshape(n, pw.m, *out)


def im2col(
    xp: np.ndarray,
    pw: PackedWeight,
    cg: int,
    out: tuple[int, ...],
    k: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
) -> np.ndarray:
    """im2col + matmul, a band of output rows at a time.

    The column buffer of a whole image can be tens of MB; bands of a few MB stay in cache and their
    allocations are recycled by malloc instead of being fresh page-faulting mmaps on every call.
    """
    n = xp.shape[0]
    group, mg = pw.group, pw.m // pw.group
    rows = cg * prod(k)
    inner = prod(out[1:])
    view = windows(xp, out, k, s, d)
    view = view.reshape(n, group, cg, *view.shape[2:])  # splitting the channel axis is always a view
    band = max(1, min(out[0], COLS_BYTES // max(1, group * rows * inner * xp.itemsize)))
    parts = workers() if pw.m * rows * prod(out) * n >= PARALLEL_MIN_MACS else 1
    bands_per_image = -(-out[0] // band)
    if parts > 1:
        # Equal bands, as many as threads (or a multiple): 56 rows in bands of 32 and 24 kept one waiting.
        per_thread = -(-n * bands_per_image // parts)
        band = max(1, -(-out[0] // min(out[0], -(-per_thread * parts // n))))
    y = np.empty((n, group, mg, out[0] * inner), dtype=pw.dtype)
    lead = (slice(None),) * (2 + len(k))
    jobs = [(item, r0, min(out[0], r0 + band)) for item in range(n) for r0 in range(0, out[0], band)]

    def bands(chunk: list[tuple[int, int, int]]) -> None:
        for item, r0, r1 in chunk:
            buf = scratch("cols", (group, rows + pw.folded, (r1 - r0) * inner), pw.dtype)
            if pw.folded:
                buf[:, rows] = 1
            # Splitting the buffer's axes is always a view, so the strided windows are copied in place.
            np.copyto(buf[:, :rows].reshape(group, cg, *k, r1 - r0, *out[1:]), view[item][lead + (slice(r0, r1),)])
            target = y[item, :, :, r0 * inner : r1 * inner]
            if group == 1:
                np.matmul(pw.matrix[0], buf[0], out=target[0])
            else:
                np.matmul(pw.matrix, buf, out=target)

    parallel([lambda a=a, b=b: bands(jobs[a:b]) for a, b in split(len(jobs), parts)])
    return y.reshape(n, pw.m, *out)


def im2col_split_channels(
    xp: np.ndarray,
    pw: PackedWeight,
    out: tuple[int, ...],
    k: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
    parts: int,
) -> np.ndarray:
    """``Y[i] = sum_p W[:, K_p] @ cols[K_p]``: each of ``parts`` threads copies the windows of its own input
    channels (rows ``K_p`` of the column matrix) and multiplies them by its columns of the weight; the
    partial products are summed. For one group and images with few output pixels (see module docstring)."""
    n, c = xp.shape[:2]
    taps = prod(k)
    rows, pixels = c * taps, prod(out)
    view = windows(xp, out, k, s, d)
    weight = pw.matrix[0]
    cuts = split(c, parts)
    y = np.empty((n, pw.m, pixels), dtype=pw.dtype)
    partials: list[list[np.ndarray]] = [[] for _ in cuts]

    def channels(part: int) -> None:
        c0, c1 = cuts[part]
        cols = scratch("cols", ((c1 - c0) * taps, pixels), pw.dtype)
        for item in range(n):
            np.copyto(cols.reshape(c1 - c0, *k, *out), view[item, c0:c1])
            target = y[item] if part == 0 else scratch(f"partial{part}.{item}", (pw.m, pixels), pw.dtype)
            np.matmul(weight[:, c0 * taps : c1 * taps], cols, out=target)
            partials[part].append(target)

    parallel([lambda part=part: channels(part) for part in range(len(cuts))])
    for item in range(n):
        for part in range(1, len(cuts)):
            y[item] += partials[part][item]
    if pw.folded:
        y += weight[:, rows : rows + 1]
    return y.reshape(n, pw.m, *out)
