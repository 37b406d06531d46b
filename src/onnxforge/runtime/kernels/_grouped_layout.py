"""Grouped pointwise convs at the ends of a channels-last chain (see ``runtime/fusion_layout.py``).

A pointwise conv with ``g`` groups is ``g`` independent GEMMs: group ``k`` maps input channels
``[k * Cg, (k + 1) * Cg)`` to output channels ``[k * Mg, (k + 1) * Mg)``. Both ends take all groups in one
batched ``np.matmul`` whose operands are views, so no input is copied:

- NCHW in, NHWC out: ``Y[n, :, k] (P x Mg) = X[n, k]^T (P x Cg) @ W[k]^T (Cg x Mg)``;
- NHWC in, NCHW out: ``Y[n, k] (Mg x P) = W[k] (Mg x Cg) @ X[n, :, k]^T (Cg x P)``.

ShuffleNet follows its first grouped conv with a channel shuffle: Reshape to ``(N, g, Mg, H, W)``,
Transpose to ``(N, Mg, g, H, W)``, Reshape back, so output channel ``j`` of group ``k`` lands on channel
``j * g + k``. Written NHWC, that is the group's ``(P x Mg)`` product stored at stride ``g`` in the pixel
rows: ``Y[n].reshape(P, Mg, g)[:, :, k]``, one pass with no shuffle copy of its own (NumPy buffers the
strided output). The bias is permuted the same way.

Both take float32 and split their groups across the intra-op threads.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnxforge.runtime.kernels._conv_layout import _check, _finish
from onnxforge.runtime.kernels._im2col import PARALLEL_MIN_MACS
from onnxforge.runtime.threads import parallel, split, workers

Activation = Callable[[np.ndarray], np.ndarray]
Conv = Callable[[np.ndarray], np.ndarray]


def _bias(b: np.ndarray | None) -> np.ndarray | None:
    return None if b is None or not b.any() else b.astype(np.float32)


def _run_groups(group: int, macs: int, product: Callable[[int, int], None]) -> None:
    parts = workers() if macs >= PARALLEL_MIN_MACS else 1
    if parts > 1 and group > 1:
        parallel([lambda a=a, z=z: product(a, z) for a, z in split(group, parts)])
    else:
        product(0, group)


def grouped_pointwise_to_nhwc(
    w: np.ndarray, b: np.ndarray | None, activation: Activation | None, group: int, shuffle: bool
) -> Conv:
    """NCHW ``(N, C, H, W)`` in, NHWC ``(N, H, W, M)`` out; ``shuffle``: output channels in channel-shuffle
    order (channel ``j * group + k`` holds group ``k``'s output ``j``)."""
    m, cg = w.shape[:2]
    mg, c = m // group, cg * group
    w_t = np.ascontiguousarray(w.reshape(group, mg, cg).transpose(0, 2, 1), dtype=np.float32)  # (g, Cg, Mg)
    bias = _bias(b)
    if bias is not None and shuffle:
        bias = np.ascontiguousarray(bias.reshape(group, mg).T).reshape(m)

    def conv_grouped_to_nhwc(x: np.ndarray) -> np.ndarray:
        _check(x, c, 1, "Conv (grouped, channels-last output)")
        n, _, h, width = x.shape
        pixels = h * width
        xs = x.astype(np.float32, copy=False).reshape(n, group, cg, pixels)
        y = np.empty((n, pixels, m), dtype=np.float32)
        # (N, g, P, Mg) views of the output: group-major channels, or interleaved at stride g when shuffled.
        target = (
            y.reshape(n, pixels, mg, group).transpose(0, 3, 1, 2)
            if shuffle
            else y.reshape(n, pixels, group, mg).transpose(0, 2, 1, 3)
        )

        def product(g0: int, g1: int) -> None:
            for i in range(n):
                np.matmul(xs[i, g0:g1].transpose(0, 2, 1), w_t[g0:g1], out=target[i, g0:g1])

        _run_groups(group, n * pixels * cg * m, product)
        _finish(y, bias, activation)
        return y.reshape(n, h, width, m)

    return conv_grouped_to_nhwc


def grouped_pointwise_from_nhwc(w: np.ndarray, b: np.ndarray | None, activation: Activation | None, group: int) -> Conv:
    """NHWC ``(N, H, W, C)`` in, NCHW ``(N, M, H, W)`` out."""
    m, cg = w.shape[:2]
    mg, c = m // group, cg * group
    w_g = np.ascontiguousarray(w.reshape(group, mg, cg), dtype=np.float32)
    bias = _bias(b)
    bias_column = None if bias is None else bias[:, None]

    def conv_grouped_from_nhwc(x: np.ndarray) -> np.ndarray:
        _check(x, c, 3, "Conv (grouped, channels-last input)")
        n, h, width, _ = x.shape
        pixels = h * width
        # (N, g, Cg, P): each group's channels of every pixel, a transposed view BLAS reads as such.
        columns = x.astype(np.float32, copy=False).reshape(n, pixels, group, cg).transpose(0, 2, 3, 1)
        y = np.empty((n, group, mg, pixels), dtype=np.float32)

        def product(g0: int, g1: int) -> None:
            for i in range(n):
                np.matmul(w_g[g0:g1], columns[i, g0:g1], out=y[i, g0:g1])

        _run_groups(group, n * pixels * cg * m, product)
        _finish(y.reshape(n, m, pixels), bias_column, activation)
        return y.reshape(n, m, h, width)

    return conv_grouped_from_nhwc
