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

from collections.abc import Callable

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._depthwise import DepthwiseTaps, padded_image
from onnxforge.runtime.kernels._im2col import PARALLEL_MIN_MACS as _PARALLEL_MIN_MACS
from onnxforge.runtime.kernels._im2col import scratch
from onnxforge.runtime.kernels._spatial import pad_for_windows, strided_view
from onnxforge.runtime.threads import parallel, split, workers

# Output bands of this size get their bias and activation while they are still in cache.
_BAND_BYTES = 256 << 10
# A pointwise conv's bands are larger: each band is one more small GEMM call, which cost more than the
# cache misses it saves. 256 KB -> 1 MB, in-process A/B: mobilenetv2_b1 0.94-0.96x at 1 thread, 0.97-0.99x
# at 2; squeezenet, shufflenet, resnet18_b1 0.97-1.01x. Kernel alone, NCHW in: 16 -> 96 channels at
# 112x112 0.91x / 0.79x (1 / 2 threads), 24 -> 144 at 56x56 1.11x / 0.79x, 128 -> 512 at 28x28 0.95x / 0.92x.
_POINTWISE_BAND_BYTES = 1 << 20

# A pointwise conv writes its output pre-padded for the depthwise conv after it only from this width on.
# Pointwise + depthwise per block of mobilenetv2_b1, 1 thread (us, profiled): 112 wide stride 2 2238 -> 1673,
# 56 wide 1245 -> 1150 and 799 -> 691, 28 wide 485 -> 476, 14 wide 523 -> 545 (the border columns are 14%
# more GEMM there, 29% at 7 wide).
_PADDED_MIN_WIDTH = 28

Activation = Callable[[np.ndarray], np.ndarray]
Conv = Callable[[np.ndarray], np.ndarray]


def _finish(y: np.ndarray, bias: np.ndarray | None, activation: Activation | None) -> None:
    if bias is not None:
        y += bias
    if activation is not None:
        activation(y)  # in place: the fused activations write into their argument


def _transposed(w: np.ndarray, extra_row: np.ndarray | None = None) -> np.ndarray:
    """``w.T`` as a new C-contiguous float32 array, with ``extra_row`` below it: written in one copy (a cast,
    a transposing copy and a concatenation were three)."""
    rows, columns = w.shape[1], w.shape[0]
    out = np.empty((rows + (extra_row is not None), columns), dtype=np.float32)
    out[:rows] = w.T
    if extra_row is not None:
        out[rows] = extra_row
    return out


def _check(x: np.ndarray, channels: int, channel_axis: int, what: str) -> None:
    if x.ndim != 4 or x.shape[channel_axis] != channels:
        raise InvalidArgument(f"{what}: expected a 4-D input with {channels} channels, got shape {list(x.shape)}")


def _pixel_bands(n: int, pixels: int, band: int, parts: int) -> list[tuple[int, int, int]]:
    """(image, first pixel, last pixel) bands of at most ``band`` pixels; with ``parts`` threads, equal bands
    in a multiple of ``parts`` (at most one per 16 pixels), so that no thread idles: MobileNet's 1x1 convs at 7x7
    and 14x14 were one band each, so one thread did all of it, and three bands at 28x28 split 2 + 1."""
    per_image = -(-pixels // band)
    if parts > 1:
        per_thread = -(-n * per_image // parts)
        per_image = max(per_image, min(-(-pixels // 16), -(-per_thread * parts // n)))
    size = -(-pixels // per_image)
    return [(i, p0, min(pixels, p0 + size)) for i in range(n) for p0 in range(0, pixels, size)]


def _pointwise_weight(w: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """``(W^T, with_bias)`` of a pointwise conv writing NHWC: the bias rides along as a last weight row against
    a row of ones, since copying the band of input channels next to that row costs less than a separate add over
    the output, whose inner loop is only M long."""
    m, c = w.shape[:2]
    with_bias = b is not None and bool(b.any())
    return _transposed(w.reshape(m, c), extra_row=b if with_bias else None), with_bias


def pointwise_to_nhwc(
    w: np.ndarray,
    b: np.ndarray | None,
    activation: Activation | None,
    weight: tuple[np.ndarray, bool] | None = None,
) -> Conv:
    """NCHW ``(N, C, H, W)`` in, NHWC ``(N, H, W, M)`` out; bias and activation applied band by band.
    ``weight``: ``_pointwise_weight(w, b)`` when the caller has it already."""
    m, c = w.shape[:2]
    w_t, with_bias = weight or _pointwise_weight(w, b)
    band = max(64, _POINTWISE_BAND_BYTES // (4 * m))

    def conv_pointwise_to_nhwc(x: np.ndarray) -> np.ndarray:
        _check(x, c, 1, "Conv (channels-last output)")
        n, _, h, width = x.shape
        rows = x.astype(np.float32, copy=False).reshape(n, c, h * width)
        y = np.empty((n, h * width, m), dtype=np.float32)
        parts = workers() if n * h * width * c * m >= _PARALLEL_MIN_MACS else 1
        jobs = _pixel_bands(n, h * width, band, parts)

        def run(first: int, last: int) -> None:
            for i, p0, p1 in jobs[first:last]:
                target = y[i, p0:p1]
                if with_bias:
                    cols = scratch("pointwise_cols", (c + 1, p1 - p0), np.dtype(np.float32))
                    np.copyto(cols[:c], rows[i, :, p0:p1])
                    cols[c] = 1
                    np.matmul(cols.T, w_t, out=target)
                else:
                    np.matmul(rows[i, :, p0:p1].T, w_t, out=target)
                _finish(target, None, activation)

        parallel([lambda a=a, z=z: run(a, z) for a, z in split(len(jobs), parts)])
        return y.reshape(n, h, width, m)

    return conv_pointwise_to_nhwc


def padded_columns(
    width: int, begins: tuple[int, int], ends: tuple[int, int], phases: int
) -> tuple[int, list[tuple[int, int, int]]]:
    """The polyphase layout of ``padded_image`` for rows of ``width`` pixels: ``(Wq, [(q0, q1, first column)]
    per phase])``. Padded column ``q * phases + phase`` holds image column ``q * phases + phase - left``; in phase
    ``phase`` the columns ``q0 <= q < q1`` hold image columns ``first, first + phases, ...``, the rest are zero."""
    left = begins[1]
    wp = width + left + ends[1]
    wq = -(-wp // phases)
    ranges = []
    for phase in range(phases):
        q0 = min(wq, max(0, -(-(left - phase) // phases)))
        q1 = min(wq, max(q0, -(-(left + width - phase) // phases)))
        ranges.append((q0, q1, q0 * phases + phase - left))
    return wq, ranges


def pointwise_to_padded(
    w: np.ndarray,
    b: np.ndarray | None,
    activation: Activation | None,
    begins: tuple[int, int],
    ends: tuple[int, int],
    phases: int,
) -> Conv:
    """NCHW ``(N, C, H, W)`` in; out the NHWC result already zero-padded (and split into column phases) the way
    the depthwise conv that reads it needs: ``(N, Hp, phases, Wq, M)``, as ``padded_image`` lays it out.

    Each band of image rows is one GEMM whose pixels are the band's padded columns in phase order: the input
    channels (few: 16-160) are gathered into that order, the output (6x as many channels) is written in place,
    and the border columns are zeroed after the activation. That replaces the depthwise conv's own padding
    copy of the wide output (mobilenetv2_b1, 96 channels at 112x112, stride 2: ~550 us in the model).
    Images narrower than ``_PADDED_MIN_WIDTH`` come out as plain NHWC ``(N, H, W, M)`` instead, which the
    depthwise conv pads itself: there the GEMM over the border columns costs more than the copy it saves.
    """
    m, c = w.shape[:2]
    w_t, with_bias = weight = _pointwise_weight(w, b)
    k = c + with_bias
    top, bottom = begins[0], ends[0]

    narrow = pointwise_to_nhwc(w, b, activation, weight)  # the same W^T, not a second copy

    def conv_pointwise_to_padded(x: np.ndarray) -> np.ndarray:
        _check(x, c, 1, "Conv (channels-last padded output)")
        n, _, h, width = x.shape
        if width < _PADDED_MIN_WIDTH:
            return narrow(x)
        wq, ranges = padded_columns(width, begins, ends, phases)
        row_pixels = phases * wq
        y = np.empty((n, top + h + bottom, phases, wq, m), dtype=np.float32)
        y[:, :top] = 0
        y[:, top + h :] = 0
        xs = x.astype(np.float32, copy=False)
        parts = workers() if n * h * width * c * m >= _PARALLEL_MIN_MACS else 1
        rows = max(1, min(h, _POINTWISE_BAND_BYTES // (4 * m * row_pixels)))
        if parts > 1 and n * -(-h // rows) < parts:
            rows = max(1, -(-h // parts))
        jobs = [(i, r0, min(h, r0 + rows)) for i in range(n) for r0 in range(0, h, rows)]

        def run(first_job: int, last_job: int) -> None:
            for i, r0, r1 in jobs[first_job:last_job]:
                cols = scratch("padded_cols", (k, r1 - r0, phases, wq), np.dtype(np.float32))
                for phase, (q0, q1, first) in enumerate(ranges):
                    cols[:c, :, phase, :q0] = 0
                    cols[:c, :, phase, q1:] = 0
                    if q1 > q0:
                        cols[:c, :, phase, q0:q1] = xs[i, :, r0:r1, first : first + (q1 - q0 - 1) * phases + 1 : phases]
                if with_bias:
                    cols[c] = 1
                band = y[i, top + r0 : top + r1]
                target = band.reshape((r1 - r0) * row_pixels, m)
                np.matmul(cols.reshape(k, -1).T, w_t, out=target)
                if activation is not None:
                    activation(target)
                for phase, (q0, q1, _) in enumerate(ranges):
                    band[:, phase, :q0] = 0
                    band[:, phase, q1:] = 0

        parallel([lambda a=a, z=z: run(a, z) for a, z in split(len(jobs), parts)])
        return y

    return conv_pointwise_to_padded


def pointwise_from_nhwc(w: np.ndarray, b: np.ndarray | None, activation: Activation | None) -> Conv:
    """NHWC ``(N, H, W, C)`` in, NCHW ``(N, M, H, W)`` out: ``X[n] (P x C) @ W^T (C x M)`` a band of pixels at a
    time, bias and activation applied to the band while it is in cache, then the band transposed into place.

    ``W (M x C) @ X[n]^T``, which writes NCHW directly, reads the image transposed: with MobileNet's few
    output channels (24-64) OpenBLAS ran it 1.2-1.8x slower than this product plus the transposing copy
    (e.g. 144 -> 24 channels at 56x56: 512 vs 369 us, 96 -> 24 at 112x112: 1565 vs 1252 us).
    """
    m, c = w.shape[:2]
    w_t = _transposed(w.reshape(m, c))
    bias = None if b is None or not b.any() else b.astype(np.float32)
    bias_column = None if bias is None else bias[:, None]
    band = max(64, _POINTWISE_BAND_BYTES // (4 * m))

    def conv_pointwise_from_nhwc(x: np.ndarray) -> np.ndarray:
        _check(x, c, 3, "Conv (channels-last input)")
        n, h, width, _ = x.shape
        pixels = h * width
        rows = x.reshape(n, pixels, c)
        y = np.empty((n, m, pixels), dtype=np.float32)
        parts = workers() if n * pixels * c * m >= _PARALLEL_MIN_MACS else 1
        jobs = _pixel_bands(n, pixels, band, parts)

        def run(first: int, last: int) -> None:
            for i, p0, p1 in jobs[first:last]:
                product = scratch("nhwc_band", (p1 - p0, m), np.dtype(np.float32))
                np.matmul(rows[i, p0:p1], w_t, out=product)
                if activation is None and bias_column is not None:
                    # One pass adds the bias while copying into place: added in the (M, band) layout its inner
                    # loop runs along the band, not along the few (24-320) channels.
                    np.add(product.T, bias_column, out=y[i, :, p0:p1])
                    continue
                _finish(product, bias, activation)
                y[i, :, p0:p1] = product.T

        parallel([lambda a=a, z=z: run(a, z) for a, z in split(len(jobs), parts)])
        return y.reshape(n, m, h, width)

    return conv_pointwise_from_nhwc


def conv_to_nhwc(
    w: np.ndarray,
    b: np.ndarray | None,
    strides: tuple[int, int],
    begins: tuple[int, int],
    ends: tuple[int, int],
    activation: Activation | None,
) -> Conv:
    """A dense (one group) 2-D conv, NCHW in, NHWC out: im2col bands of output rows multiplied as
    ``cols^T (P x K) @ W^T (K x M)``, so the GEMM writes channels-last rows directly (a chain's first conv
    that is not 1x1, like MobileNet's stem). The bias rides along as a weight row against a row of ones."""
    m, c, kh, kw = w.shape
    k_rows = c * kh * kw
    w_t = _transposed(w.reshape(m, k_rows), extra_row=np.zeros(m, np.float32) if b is None else b)
    sh, sw = strides

    def conv_to_nhwc_(x: np.ndarray) -> np.ndarray:
        _check(x, c, 1, "Conv (channels-last output)")
        n, _, h, width = x.shape
        ho = (h + begins[0] + ends[0] - kh) // sh + 1
        wo = (width + begins[1] + ends[1] - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise InvalidArgument(f"Conv: input spatial shape {[h, width]} is too small for kernel {[kh, kw]}")
        xp = pad_for_windows(x.astype(np.float32, copy=False), begins, (ho, wo), (kh, kw), strides, (1, 1))
        sn, sc, sy, sx = xp.strides
        windows = strided_view(xp, (n, c, kh, kw, ho, wo), (sn, sc, sy, sx, sy * sh, sx * sw))
        y = np.empty((n, ho, wo, m), dtype=np.float32)
        band = max(1, min(ho, _BAND_BYTES * 16 // max(1, (k_rows + 1) * wo * 4)))
        parts = workers() if n * ho * wo * k_rows * m >= _PARALLEL_MIN_MACS else 1
        if n * -(-ho // band) < parts:
            band = max(1, -(-ho // parts))
        jobs = [(i, r0, min(ho, r0 + band)) for i in range(n) for r0 in range(0, ho, band)]

        def run(first: int, last: int) -> None:
            for i, r0, r1 in jobs[first:last]:
                cols = np.empty((k_rows + 1, (r1 - r0) * wo), dtype=np.float32)
                cols[k_rows] = 1
                np.copyto(cols[:k_rows].reshape(c, kh, kw, r1 - r0, wo), windows[i, :, :, :, r0:r1])
                target = y[i, r0:r1].reshape((r1 - r0) * wo, m)
                np.matmul(cols.T, w_t, out=target)
                if activation is not None:
                    activation(target)

        parallel([lambda a=a, z=z: run(a, z) for a, z in split(len(jobs), parts)])
        return y

    return conv_to_nhwc_


def prepadded_fits(kw: int, sw: int) -> bool:
    """Whether a depthwise conv can read :func:`pointwise_to_padded`'s output: its width ``sw * Wq`` stands for
    any padded width from ``sw * (Wq - 1) + 1`` to ``sw * Wq``, and ``(Wp - kw) // sw`` is the same for all of
    them only when ``kw % sw == 1`` (always for stride 1; 3x3 or 5x5 kernels at stride 2)."""
    return sw == 1 or kw % sw == 1


def depthwise_nhwc(
    w: np.ndarray,
    b: np.ndarray | None,
    strides: tuple[int, int],
    begins: tuple[int, int],
    ends: tuple[int, int],
    activation: Activation | None,
    prepadded: bool = False,
) -> Conv:
    """NHWC in and out; ``w`` is ``(C, 1, kh, kw)`` (one filter per channel), explicit pads, no dilation.

    ``prepadded``: the input is already padded and split into column phases by :func:`pointwise_to_padded`,
    ``(N, Hp, sw, Wq, C)``; then ``kw % sw == 1`` (or ``sw == 1``) must hold, so that the output width does not
    depend on which of the ``sw`` widths ``Wq`` stands for (see :func:`prepadded_fits`)."""
    c, _, kh, kw = w.shape
    taps = DepthwiseTaps(w)
    bias = None if b is None or not b.any() else b.astype(np.float32)
    sh, sw = strides
    # The bias tiled along a whole output row (Wo * C floats), per output width: added to (rows, Wo * C) its
    # inner loop is a row long, not C long (56x56x144: 86 -> ~20 us).
    row_bias: dict[int, np.ndarray] = {}

    def finish(band: np.ndarray) -> None:
        if bias is not None:
            rows, wo, _ = band.shape
            tiled = row_bias.get(wo)
            if tiled is None:
                tiled = row_bias.setdefault(wo, np.tile(bias, wo))
            flat = band.reshape(rows, wo * c)
            flat += tiled
        if activation is not None:
            activation(band)

    def conv_depthwise_prepadded(x: np.ndarray) -> np.ndarray:
        if x.ndim == 4:
            return conv_depthwise_nhwc(x)  # the image was too narrow to pay for padded output
        if x.ndim != 5 or x.shape[2] != sw or x.shape[4] != c:
            raise InvalidArgument(
                f"Conv (channels-last depthwise): expected a padded input (N, Hp, {sw}, Wq, {c}), got shape {list(x.shape)}"
            )
        n, hp, _, wq, _ = x.shape
        ho, wo = (hp - kh) // sh + 1, (sw * wq - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise InvalidArgument(f"Conv: padded spatial shape {[hp, sw * wq]} is too small for kernel {[kh, kw]}")
        y = np.empty((n, ho, wo, c), dtype=np.float32)
        for i in range(n):
            taps.run(x[i], y[i], strides, (1, 1), finish if bias is not None or activation else None)
        return y

    def conv_depthwise_nhwc(x: np.ndarray) -> np.ndarray:
        _check(x, c, 3, "Conv (channels-last depthwise)")
        n, h, width, _ = x.shape
        hp, wp = h + begins[0] + ends[0], width + begins[1] + ends[1]
        ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise InvalidArgument(f"Conv: input spatial shape {[h, width]} is too small for kernel {[kh, kw]}")
        xf = x.astype(np.float32, copy=False)
        y = np.empty((n, ho, wo, c), dtype=np.float32)
        for i in range(n):
            taps.run(
                padded_image((hp, wp, c), begins, xf[i], sw),
                y[i],
                strides,
                (1, 1),
                finish if bias is not None or activation else None,
            )
        return y

    if prepadded:
        if not prepadded_fits(kw, sw):
            raise ValueError(f"a prepadded depthwise conv needs kw % sw == 1, got kw={kw}, sw={sw}")
        return conv_depthwise_prepadded
    return conv_depthwise_nhwc
