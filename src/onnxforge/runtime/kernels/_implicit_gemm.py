"""Stride-1 conv as one GEMM per kernel position on flattened padded images, with no column buffer.

On the flattened padded image of each channel (the batch laid out ``(C, N, *grid)``, see
``_im2col.flat_images``), the inputs that kernel position ``t`` meets for a run of ``L`` consecutive output
positions are the plain slice ``flat[:, off_t : off_t + L]``: ``C`` rows, each contiguous, one row stride
apart. BLAS reads that view as it is, so

    Y (M x L) = sum_t W_t (M x C) @ flat[:, off_t : off_t + L]        (+ B, then cropped to the outputs)

needs no im2col copy. Outputs land on the padded grid (junk at the right and bottom edges) and are cropped,
with the bias added, in one pass at the end. NumPy's matmul cannot accumulate into its output, so each
position after the first costs an addition over ``M x L``; that is cheap next to the copy it replaces when
the filters are few and the input channels many (``im2col`` copies ``C * K`` rows per column, the additions
touch ``M`` rows per position). Kernel alone at 1 thread, vs the banded im2col, alternating: DenseNet-121's
128 -> 32 3x3 convs at 14x14 0.83-0.85x, at 7x7 0.88-0.90x the time, 256 -> 64 at 28x28 0.87x; but 128 -> 32
at 28x28 0.93x at 1 thread and 1.19x at 2 (im2col's bands split better), 56x56 1.0-1.04x, and with many
filters it loses (16 -> 128 at 28x28: 1.6x), hence :func:`tap_stack` and :func:`pays`. DenseNet-121 in-process A/B at 1 thread:
0.978-0.992x the time (four runs).

The work is cut into runs of output positions small enough that a run's sum and the product being added
stay in cache; at several intra-op threads each thread takes its share of the runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from onnxforge.runtime.kernels._im2col import PARALLEL_MIN_MACS, flat_images, scratch
from onnxforge.runtime.kernels._spatial import prod
from onnxforge.runtime.threads import parallel, split, workers

if TYPE_CHECKING:
    from onnxforge.runtime.kernels._packed_weight import PackedWeight

# A run's sum and its product, M x run floats each, kept within this many bytes together.
_RUN_BYTES = 512 << 10
# Larger images keep im2col (see the module docstring).
_MAX_PIXELS = 256
# Runs narrower than this make BLAS calls too small to pay their overhead.
_MIN_RUN = 256


def tap_stack(matrix: np.ndarray, cg: int, kernel: tuple[int, ...]) -> np.ndarray | None:
    """A packed im2col weight ``(1, M, Cg * K [+ bias])`` as ``(K, M, Cg)``, one contiguous ``W_t`` per kernel
    position, for a weight this path may take (float32, one group, a kernel of more than one position, at
    most 64 filters, at most half as many as input channels; see the module docstring), else None."""
    group, m = matrix.shape[:2]
    ksize = prod(kernel)
    if matrix.dtype != np.float32 or group != 1 or ksize <= 1 or m > 64 or 2 * m > cg:
        return None
    return np.ascontiguousarray(matrix[0, :, : cg * ksize].reshape(m, cg, ksize).transpose(2, 0, 1))


def pays(pw: PackedWeight, strides: tuple[int, ...], out: tuple[int, ...], batch: int, threads: int) -> bool:
    """Whether a conv takes this path: a weight with a tap stack, stride 1, small images (see the module
    docstring); at several threads only when the batch has outputs enough to split (a small image runs in
    one thread here, where im2col would split it: DenseNet-121 in-process A/B at 2 threads 1.02x the time)."""
    return (
        pw.tap_stack is not None
        and all(s == 1 for s in strides)
        and prod(out) <= _MAX_PIXELS
        and (threads <= 1 or batch * prod(out) >= 2 * _MIN_RUN)
    )


def implicit_gemm(
    x: np.ndarray,
    pw: PackedWeight,
    begins: tuple[int, ...],
    out: tuple[int, ...],
    k: tuple[int, ...],
    d: tuple[int, ...],
) -> np.ndarray:
    """The stride-1 conv of ``x`` (N, C, *spatial), float32, as ``(N, M, *out)``; the bias is added here too."""
    n, c = x.shape[:2]
    m = pw.m
    weights = pw.tap_stack
    assert weights is not None, "implicit_gemm needs a weight that pays() accepted"
    bias = pw.matrix[0, :, -1] if pw.folded else None
    flat, grid, offsets, length = flat_images(x, begins, out, k, d)
    y_grid = scratch("implicit_out", (m, n * prod(grid)), np.dtype(np.float32))
    run = max(_MIN_RUN, _RUN_BYTES // (8 * m))
    # A small image stays in one thread: splitting its kernel positions between two (each summing its share,
    # then adding up) took 1.2x the time of one thread at 14x14 (the GIL's hand-offs between the products).
    parts = workers() if m * c * len(offsets) * length >= PARALLEL_MIN_MACS and length >= 2 * _MIN_RUN else 1
    run = min(run, max(_MIN_RUN, -(-length // parts)))
    starts = list(range(0, length, run))
    parallel(
        [
            lambda a=a, b=b: _sum_runs(y_grid, weights, flat, offsets, starts[a:b], run, length)
            for a, b in split(len(starts), parts)
        ]
    )
    outputs = y_grid.reshape(m, n, *grid)[(slice(None), slice(None), *(slice(0, o) for o in out))].swapaxes(0, 1)
    y = np.empty((n, m, *out), dtype=np.float32)
    if bias is None:
        np.copyto(y, outputs)
    else:
        np.add(outputs, bias.reshape(m, *(1,) * len(out)), out=y)
    return y


def _sum_into(
    target: np.ndarray, weights: np.ndarray, flat: np.ndarray, offsets: list[int], taps: range, p0: int
) -> None:
    """``target`` (M, L) = the sum over ``taps`` of ``W_t @ flat[:, off_t + p0 : off_t + p0 + L]``."""
    width = target.shape[1]
    product = scratch("implicit_product", target.shape, np.dtype(np.float32))
    for index, tap in enumerate(taps):
        block = flat[:, offsets[tap] + p0 : offsets[tap] + p0 + width]
        if index == 0:
            np.matmul(weights[tap], block, out=target)
        else:
            np.matmul(weights[tap], block, out=product)
            target += product


def _sum_runs(
    y_grid: np.ndarray,
    weights: np.ndarray,
    flat: np.ndarray,
    offsets: list[int],
    starts: list[int],
    run: int,
    length: int,
) -> None:
    """Every kernel position's product over the runs of output positions beginning at ``starts``."""
    for p0 in starts:
        _sum_into(y_grid[:, p0 : min(length, p0 + run)], weights, flat, offsets, range(len(offsets)), p0)
