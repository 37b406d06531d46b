"""Channels-last (NHWC) convolutions for the plan's layout chains (see ``runtime/fusion_layout.py``).

A pointwise (1x1, stride 1, unpadded) conv is one GEMM per image whichever way its operands are laid out:

- NCHW in, NHWC out: ``Y[n] (P x M) = X[n]^T (P x C) @ W^T (C x M)``; ``X[n]^T`` is a transposed view, which
  BLAS reads as such, so no copy is made;
- NHWC in, NCHW out: ``Y[n] (M x P) = W (M x C) @ X[n]^T``, with ``X[n]`` the ``(P x C)`` rows of the image.

A depthwise conv in NHWC is ``Y[n, o] = B + sum_j W[:, j] * Xpad[n, o * s + j]``: each kernel position is a
strided view whose innermost axis (the channels) is contiguous, so NumPy streams it at full speed with no
polyphase copies and no junk columns, unlike the NCHW path in ``conv.py``. So a pointwise-depthwise-pointwise
block (MobileNet's inverted residual) runs channels-last in the middle without a single transpose.

All three take float32 and split their work across the intra-op threads (rows of the output).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels.conv import _PARALLEL_MIN_MACS
from onnxforge.runtime.threads import parallel, split, workers

# Output bands of this size get their bias and activation while they are still in cache.
_BAND_BYTES = 256 << 10

Activation = Callable[[np.ndarray], np.ndarray]
Conv = Callable[[np.ndarray], np.ndarray]


def _finish(y: np.ndarray, bias: np.ndarray | None, activation: Activation | None) -> None:
    if bias is not None:
        y += bias
    if activation is not None:
        activation(y)  # in place: the fused activations write into their argument


def _check(x: np.ndarray, channels: int, channel_axis: int, what: str) -> None:
    if x.ndim != 4 or x.shape[channel_axis] != channels:
        raise InvalidArgument(f"{what}: expected a 4-D input with {channels} channels, got shape {list(x.shape)}")


def pointwise_to_nhwc(w: np.ndarray, b: np.ndarray | None, activation: Activation | None) -> Conv:
    """NCHW ``(N, C, H, W)`` in, NHWC ``(N, H, W, M)`` out; bias and activation applied band by band."""
    m, c = w.shape[:2]
    w_t = np.ascontiguousarray(w.reshape(m, c).T.astype(np.float32))
    bias = None if b is None or not b.any() else b.astype(np.float32)
    band = max(64, _BAND_BYTES // (4 * m))

    def conv_pointwise_to_nhwc(x: np.ndarray) -> np.ndarray:
        _check(x, c, 1, "Conv (channels-last output)")
        n, _, h, width = x.shape
        rows = x.astype(np.float32, copy=False).reshape(n, c, h * width)
        y = np.empty((n, h * width, m), dtype=np.float32)
        parts = workers() if n * h * width * c * m >= _PARALLEL_MIN_MACS else 1
        jobs = [(i, p0, min(p1, p0 + band)) for i in range(n) for p1 in [h * width] for p0 in range(0, p1, band)]

        def run(first: int, last: int) -> None:
            for i, p0, p1 in jobs[first:last]:
                target = y[i, p0:p1]
                np.matmul(rows[i, :, p0:p1].T, w_t, out=target)
                _finish(target, bias, activation)

        parallel([lambda a=a, z=z: run(a, z) for a, z in split(len(jobs), parts)])
        return y.reshape(n, h, width, m)

    return conv_pointwise_to_nhwc


def pointwise_from_nhwc(w: np.ndarray, b: np.ndarray | None, activation: Activation | None) -> Conv:
    """NHWC ``(N, H, W, C)`` in, NCHW ``(N, M, H, W)`` out; bias and activation applied block by block."""
    m, c = w.shape[:2]
    w_mat = np.ascontiguousarray(w.reshape(m, c).astype(np.float32))
    bias = None if b is None or not b.any() else b.astype(np.float32).reshape(m, 1)

    def conv_pointwise_from_nhwc(x: np.ndarray) -> np.ndarray:
        _check(x, c, 3, "Conv (channels-last input)")
        n, h, width, _ = x.shape
        rows = x.reshape(n, h * width, c)
        y = np.empty((n, m, h * width), dtype=np.float32)
        parts = workers() if n * h * width * c * m >= _PARALLEL_MIN_MACS else 1
        block = max(16, _BAND_BYTES // (4 * h * width))
        jobs = [(i, m0, min(m, m0 + block)) for i in range(n) for m0 in range(0, m, block)]

        def run(first: int, last: int) -> None:
            for i, m0, m1 in jobs[first:last]:
                target = y[i, m0:m1]
                np.matmul(w_mat[m0:m1], rows[i].T, out=target)
                _finish(target, None if bias is None else bias[m0:m1], activation)

        parallel([lambda a=a, z=z: run(a, z) for a, z in split(len(jobs), parts)])
        return y.reshape(n, m, h, width)

    return conv_pointwise_from_nhwc


def depthwise_nhwc(
    w: np.ndarray,
    b: np.ndarray | None,
    strides: tuple[int, int],
    begins: tuple[int, int],
    ends: tuple[int, int],
    activation: Activation | None,
) -> Conv:
    """NHWC in and out; ``w`` is ``(C, 1, kh, kw)`` (one filter per channel), explicit pads, no dilation."""
    c, _, kh, kw = w.shape
    taps = [np.ascontiguousarray(w[:, 0, i, j].astype(np.float32)) for i, j in itertools.product(range(kh), range(kw))]
    offsets = list(itertools.product(range(kh), range(kw)))
    bias = None if b is None or not b.any() else b.astype(np.float32)
    sh, sw = strides

    def conv_depthwise_nhwc(x: np.ndarray) -> np.ndarray:
        _check(x, c, 3, "Conv (channels-last depthwise)")
        n, h, width, _ = x.shape
        hp, wp = h + begins[0] + ends[0], width + begins[1] + ends[1]
        ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise InvalidArgument(f"Conv: input spatial shape {[h, width]} is too small for kernel {[kh, kw]}")
        xf = x.astype(np.float32, copy=False)
        # Per kernel position, the outputs whose input pixel is inside the image: no padded copy is made.
        spans = [(_span(i, begins[0], sh, h, ho), _span(j, begins[1], sw, width, wo)) for i, j in offsets]
        full = [index for index, (rows, cols) in enumerate(spans) if rows == (0, ho) and cols == (0, wo)]
        y = np.empty((n, ho, wo, c), dtype=np.float32)
        parts = workers() if y.size * len(taps) >= _PARALLEL_MIN_MACS else 1

        def rows(r0: int, r1: int) -> None:
            acc = y[:, r0:r1]
            tmp = np.empty_like(acc)
            if full:
                first = full[0]
                np.multiply(_source(xf, offsets[first], (r0, r1), (0, wo), begins, strides), taps[first], out=acc)
            else:
                first = -1
                acc.fill(0)
            for index, ((i, j), tap) in enumerate(zip(offsets, taps)):
                (a0, a1), (b0, b1) = spans[index]
                a0, a1 = max(a0, r0), min(a1, r1)
                if index == first or a0 >= a1 or b0 >= b1:
                    continue
                part = tmp[:, : a1 - a0, : b1 - b0]
                np.multiply(_source(xf, (i, j), (a0, a1), (b0, b1), begins, strides), tap, out=part)
                acc[:, a0 - r0 : a1 - r0, b0:b1] += part
            _finish(acc, bias, activation)

        # Whole-tensor products per kernel position: measured faster than cache-sized bands of rows, whose
        # extra NumPy calls on short strided slices cost more than the memory traffic they save.
        parallel([lambda a=a, z=z: rows(a, z) for a, z in split(ho, parts)])
        return y

    return conv_depthwise_nhwc


def _span(offset: int, begin: int, stride: int, size: int, out: int) -> tuple[int, int]:
    """Outputs ``o`` in ``[lo, hi)`` whose input position ``o * stride + offset - begin`` lies in ``[0, size)``."""
    lo = max(0, -(-(begin - offset) // stride))
    hi = min(out, (size - 1 + begin - offset) // stride + 1)
    return lo, max(lo, hi)


def _source(
    x: np.ndarray,
    offset: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    begins: tuple[int, int],
    strides: tuple[int, int],
) -> np.ndarray:
    """The input pixels that outputs ``rows x cols`` read at kernel position ``offset`` (a strided view)."""
    (i, j), (r0, r1), (c0, c1), (sh, sw) = offset, rows, cols, strides
    top, left = r0 * sh + i - begins[0], c0 * sw + j - begins[1]
    return x[:, top : top + (r1 - r0 - 1) * sh + 1 : sh, left : left + (c1 - c0 - 1) * sw + 1 : sw]
