"""Conv: ``Y[n, m, o] = B[m] + sum_{c in group(m), j} W[m, c, j] * Xpad[n, c, o * strides + j * dilations]``.

Three strategies, chosen from the weight's shape once per node (and the weight packed for it once, in
``prepare``, when it is a constant):

- 1x1 kernels are a plain matmul ``W[g] (Mg x Cg) @ X[n, g] (Cg x P)`` on the (stride-subsampled) input;
- depthwise convs (one input channel per group) sum ``W[:, j] * shifted input`` over kernel positions on
  flattened polyphase images, because a batched matmul of many tiny matrices is far slower than a few
  whole-tensor multiply-adds;
- everything else is im2col: a strided view ``(N, G, Cg, *kernel, *out)`` of the padded input is copied,
  a band of output rows at a time, to ``(G, Cg*K, rows*cols)`` and multiplied as ``W[g] (Mg x Cg*K) @ cols``
  so BLAS does the work; a constant bias rides along as an extra weight column against a row of ones.
  The im2col variants (row bands, flat batches, split input channels) are in ``_im2col``.

float16/bfloat16 run through float32 (numpy has no half-precision BLAS) and are cast back.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._conv_dense import DenseConv, dense_conv
from onnxforge.runtime.kernels._depthwise import _PARALLEL_MIN_MACS as DEPTHWISE_PARALLEL_MIN_MACS
from onnxforge.runtime.kernels._depthwise import DepthwiseTaps, padded_image
from onnxforge.runtime.kernels._im2col import (
    PARALLEL_MIN_MACS,
    SMALL_COLS,
    SPLIT_CHANNELS_MAX_PIXELS,
    flat_overhead,
    im2col,
    im2col_flat,
    im2col_small,
    im2col_split_channels,
    scratch,
)
from onnxforge.runtime.kernels._implicit_gemm import implicit_gemm, pays
from onnxforge.runtime.kernels._packed_weight import PackedWeight, check_weight
from onnxforge.runtime.kernels._spatial import (
    conv_geometry,
    kernel_from,
    pad_for_windows,
    prod,
    spatial_params,
    window_slice,
)
from onnxforge.runtime.registry import kernel
from onnxforge.runtime.threads import parallel, split, workers

# im2col_flat computes junk outputs at the image edges; beyond this ratio of computed to real outputs it
# loses to im2col. It pays on a batch of small images, where it avoids im2col's per-image loop (1.5x
# faster on 8x8 digits at batch 360); once one image is a big GEMM of its own (ResNet-18's 3x3 layers at
# batch 8, from 56x56x64 to 7x7x512), im2col's per-image bands were 10-25% faster.
_FLAT_MAX_OVERHEAD = 3.0
_FLAT_MIN_BATCH = 4
_FLAT_MAX_IMAGE_MACS = 4_000_000
# Depthwise convs on images up to this size go through channels-last copies (see _depthwise_hwc); on larger
# ones NumPy's transposing copies cost more than the faster sum saves (measured at 112x112, 32-96 channels).
_HWC_MAX_PIXELS = 56 * 56
# Input shapes whose conv geometry a prepared kernel remembers (dynamic shapes beyond it are computed per run).
_GEOMETRY_CACHE_SIZE = 16


Geometry = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def _geometry(
    shape: tuple[int, ...],
    pw: PackedWeight,
    auto_pad: str,
    pads: Sequence[int] | None,
    strides: Sequence[int] | None,
    dilations: Sequence[int] | None,
) -> Geometry:
    """(kernel, strides, dilations, pad begins, output shape) of a conv on inputs of ``shape``, after checking
    the input's rank and channels against the weight."""
    if len(shape) != len(pw.kernel) + 2:
        raise InvalidArgument(f"Conv input must have rank {len(pw.kernel) + 2} to match the weight, got {list(shape)}")
    if shape[1] != pw.cg * pw.group:
        raise InvalidArgument(
            f"Conv input has {shape[1]} channels, but weight expects {pw.cg} per group x group={pw.group}"
        )
    k, s, d = spatial_params(len(pw.kernel), pw.kernel, strides, dilations)
    begins, _, out = conv_geometry(auto_pad, shape[2:], k, s, d, pads)
    return k, s, d, begins, out


def _conv(
    x: np.ndarray,
    pw: PackedWeight,
    bias: np.ndarray | None,
    auto_pad: str,
    pads: Sequence[int] | None,
    strides: Sequence[int] | None,
    dilations: Sequence[int] | None,
    geometry: Geometry | None = None,
) -> np.ndarray:
    k, s, d, begins, out = geometry or _geometry(x.shape, pw, auto_pad, pads, strides, dilations)
    group, m, cg = pw.group, pw.m, pw.cg
    n = x.shape[0]
    xc = x.astype(pw.dtype, copy=False)
    unique = pw.compact or pw
    if pw.kind == "pointwise":
        y = _pointwise(xc, unique, begins, out, s)
    elif pw.hwc_taps is not None and min(begins) >= 0 and prod(x.shape[2:]) <= _HWC_MAX_PIXELS:
        y = _depthwise_hwc(xc, pw.hwc_taps, begins, out, s, d)
    elif pw.kind == "depthwise":
        y = _depthwise(xc, pw, begins, out, s, d)
    elif pays(unique, s, out, n, workers()):
        y = implicit_gemm(xc, unique, begins, out, k, d)
    elif (
        group == 1
        and n >= _FLAT_MIN_BATCH
        and all(si == 1 for si in s)
        and flat_overhead(out, k, d) <= _FLAT_MAX_OVERHEAD
        and m * cg * prod(k) * prod(out) < _FLAT_MAX_IMAGE_MACS
    ):
        y = im2col_flat(xc, unique, begins, out, k, d)
    elif (
        group == 1
        and n < (parts := workers())
        and prod(out) <= SPLIT_CHANNELS_MAX_PIXELS
        and cg >= 16 * parts
        and n * m * cg * prod(k) * prod(out) >= PARALLEL_MIN_MACS
    ):
        y = im2col_split_channels(pad_for_windows(xc, begins, out, k, s, d), unique, out, k, s, d, parts)
    elif group == 1 and n <= 4 and (cg * prod(k) + 1) * prod(out) <= SMALL_COLS:
        y = im2col_small(pad_for_windows(xc, begins, out, k, s, d), unique, out, k, s, d)
    else:
        y = im2col(pad_for_windows(xc, begins, out, k, s, d), unique, cg, out, k, s, d)
    if pw.expand is not None:
        y = np.take(y, pw.expand, axis=1)
    if bias is not None and not pw.folded:
        if bias.shape != (m,):
            raise InvalidArgument(f"Conv bias must have shape [{m}], got {list(bias.shape)}")
        y += bias.astype(pw.dtype, copy=False).reshape(m, *(1,) * len(out))
    return y if y.dtype == x.dtype else y.astype(x.dtype)


def _pointwise(
    x: np.ndarray, pw: PackedWeight, begins: tuple[int, ...], out: tuple[int, ...], s: tuple[int, ...]
) -> np.ndarray:
    ones = (1,) * len(out)
    xs = pad_for_windows(x, begins, out, ones, s, ones)
    if any(si != 1 for si in s):
        xs = xs[window_slice((0,) * len(out), out, s, ones)]
    n, c = x.shape[:2]
    group = pw.group
    size = prod(out)
    cols = np.ascontiguousarray(xs).reshape(n, group, c // group, size)
    y = np.empty((n, group, pw.m // group, size), dtype=pw.dtype)
    parts = workers() if pw.m * (c // group) * size * n >= PARALLEL_MIN_MACS else 1
    if group > 1 and parts > 1:
        # Independent groups: each part multiplies its own groups' matrices.
        def groups(g0: int, g1: int) -> None:
            np.matmul(pw.matrix[g0:g1], cols[:, g0:g1], out=y[:, g0:g1])

        parallel([lambda a=a, b=b: groups(a, b) for a, b in split(group, parts)])
    elif group > 1:
        np.matmul(pw.matrix, cols, out=y)
    else:
        # One GEMM per image, cut into blocks across the intra-op threads: blocks of rows (output channels)
        # when there are more of them than pixels (or too few pixels), else of columns (pixels). Each block
        # then reads only its share of the bigger operand: a late layer's weight (squeezenet's 1000x512 at
        # 13x13) is not in cache (in-process A/B at 2 threads: squeezenet 0.90x, densenet121 0.92x the
        # time, resnet50 0.98x). Under load this beats OpenBLAS's own threads, whose workers spin.
        per_image = -(-parts // n)
        by_rows = size < 64 * per_image or pw.m > size
        cuts = split(pw.m, per_image, minimum=16) if by_rows else split(size, per_image, minimum=64)
        jobs = [(i, a, b) for i in range(n) for a, b in cuts]

        def blocks(chunk: list[tuple[int, int, int]]) -> None:
            for i, a, b in chunk:
                if by_rows:
                    np.matmul(pw.matrix[0, a:b], cols[i, 0], out=y[i, 0, a:b])
                else:
                    np.matmul(pw.matrix[0], cols[i, 0, :, a:b], out=y[i, 0, :, a:b])

        parallel([lambda a=a, b=b: blocks(jobs[a:b]) for a, b in split(len(jobs), parts)])
    return y.reshape(n, pw.m, *out)


def _depthwise_hwc(
    x: np.ndarray,
    taps: DepthwiseTaps,
    begins: tuple[int, ...],
    out: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
) -> np.ndarray:
    """2-D depthwise conv (multiplier 1) through channels-last images: the input is transposed into the
    padded scratch image, and the result back to NCHW; see ``_depthwise.py`` for why that pays."""
    n, c = x.shape[:2]
    ho, wo = out
    # The padded image is exactly what the windows reach: trailing pads beyond it are never read.
    hp, wp = ((o - 1) * si + di * (k - 1) + 1 for o, si, di, k in zip(out, s, d, (taps.kh, taps.kw)))
    crop = x[:, :, : max(0, hp - begins[0]), : max(0, wp - begins[1])]
    hwc = np.empty((ho, wo, c), dtype=np.float32)
    y = np.empty((n, c, ho, wo), dtype=np.float32)
    for i in range(n):
        padded = padded_image((hp, wp, c), (begins[0], begins[1]), crop[i].transpose(1, 2, 0), s[1])
        taps.run(padded, hwc, (s[0], s[1]), (d[0], d[1]))
        y[i] = hwc.transpose(2, 0, 1)
    return y


def _phase_slices(n: int, begin: int, phase: int, s: int, size: int) -> tuple[slice, slice] | None:
    """(phase-grid slice, input slice) of the input positions ``t * s + phase - begin`` for ``t < size``."""
    t0 = max(0, -((phase - begin) // s))
    i0 = t0 * s + phase - begin
    if i0 >= n or t0 >= size:
        return None
    count = min(size - t0, (n - 1 - i0) // s + 1)
    return slice(t0, t0 + count), slice(i0, i0 + (count - 1) * s + 1, s)


def _depthwise(
    x: np.ndarray,
    pw: PackedWeight,
    begins: tuple[int, ...],
    out: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
) -> np.ndarray:
    """Depthwise conv as a sum over kernel positions of ``tap[c] * shifted input``, on flattened images.

    The padded input is split into its ``prod(strides)`` polyphase components (every s-th pixel from each
    start), so every kernel position reads one component at a unit-stride offset: on the flattened
    component that is one long contiguous run per channel, several times faster for numpy than 2-D
    strided slices. Outputs land on the component's grid (a few junk columns per row, from runs that
    wrap) and are cropped at the end. Channel c feeds outputs c*mult .. c*mult+mult-1, so an axis of
    length 1 broadcasts the input over the multiplier.
    """
    n, c = x.shape[:2]
    k = pw.kernel
    grid = [o - 1 + -(-(di * (ki - 1) + 1) // si) for o, ki, si, di in zip(out, k, s, d)]
    # One spare row on the first axis: the runs of the last kernel positions spill past it by < one row.
    shape = [grid[0] + 1, *grid[1:]]
    phases = list(itertools.product(*(range(si) for si in s)))
    buf = scratch("phases", (len(phases), n, c, *shape), x.dtype, zero=True)
    lead = (slice(None), slice(None))
    for index, phase in enumerate(phases):
        parts = [_phase_slices(ni, b, p, si, g) for ni, b, p, si, g in zip(x.shape[2:], begins, phase, s, grid)]
        if all(part is not None for part in parts):
            target = tuple(part[0] for part in parts if part is not None)
            source = tuple(part[1] for part in parts if part is not None)
            buf[(index, *lead, *target)] = x[(*lead, *source)]
    flat = buf.reshape(len(phases), n, c, 1, -1)
    steps = [prod(shape[i + 1 :]) for i in range(len(shape))]
    length = out[0] * steps[0]
    acc = np.empty((n, c, pw.m // c, length), dtype=x.dtype)
    reads = []
    for offset in itertools.product(*(range(ki) for ki in k)):
        reach = [j * di for j, di in zip(offset, d)]
        phase = phases.index(tuple(r % si for r, si in zip(reach, s)))
        reads.append((phase, sum((r // si) * st for r, si, st in zip(reach, s, steps))))

    def channels(c0: int, c1: int) -> None:
        part = acc[:, c0:c1]
        tmp = scratch("taps", part.shape, acc.dtype)
        for index, (tap, (phase, start)) in enumerate(zip(pw.taps, reads)):
            view = flat[phase, :, c0:c1, :, start : start + length]
            np.multiply(view, tap.reshape(c, -1, 1)[c0:c1], out=part if index == 0 else tmp)
            if index:
                part += tmp

    parts = workers() if acc.size * len(reads) >= DEPTHWISE_PARALLEL_MIN_MACS else 1
    parallel([lambda a=a, b=b: channels(a, b) for a, b in split(c, parts)])
    full = acc.reshape(n, pw.m, out[0], *grid[1:])
    if tuple(grid[1:]) == out[1:]:
        return full
    return np.ascontiguousarray(full[(*lead, slice(None), *(slice(0, o) for o in out[1:]))])


def _prepare_conv(
    constants: list[Any],
    *,
    auto_pad: str = "NOTSET",
    dilations: list[int] | None = None,
    group: int = 1,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> Callable[..., np.ndarray] | None:
    w = constants[1] if len(constants) > 1 else None
    if not isinstance(w, np.ndarray):
        return None
    kernel_from(kernel_shape, w.shape)
    b_const = constants[2] if len(constants) > 2 and isinstance(constants[2], np.ndarray) else None
    packed = PackedWeight(w, group, b_const)
    # Input shape -> geometry: checked and computed once per shape, not on every run.
    geometries: dict[tuple[int, ...], Geometry] = {}
    # Image shape -> the conv as one dense matrix (None: too big), made on first use (see _conv_dense).
    dense: dict[tuple[int, ...], DenseConv | None] = {}

    def dense_for(shape: tuple[int, ...], geometry: Geometry) -> DenseConv | None:
        image = shape[1:]
        if image in dense:
            return dense[image]
        k, _, _, _, out = geometry
        unpacked = PackedWeight(w, group)  # no folded bias: T holds the weights alone, exactly

        def conv_of(basis: np.ndarray) -> np.ndarray:
            return _conv(basis, unpacked, None, auto_pad, pads, strides, dilations)

        useful = packed.m * packed.cg * prod(k) * prod(out)
        made = dense_conv(image, packed.m, useful, out, packed.dtype, b_const, conv_of)
        if len(dense) < _GEOMETRY_CACHE_SIZE:
            dense[image] = made
        return made

    def conv_packed(X: np.ndarray, W: np.ndarray, B: np.ndarray | None = None) -> np.ndarray:
        geometry = geometries.get(X.shape)
        if geometry is None:
            geometry = _geometry(X.shape, packed, auto_pad, pads, strides, dilations)
            if len(geometries) < _GEOMETRY_CACHE_SIZE:
                geometries[X.shape] = geometry
        # Identical filters must give bit-identical channels (see PackedWeight.expand): a dense product could
        # round them apart, so such weights keep the window paths. So does a bias given at run time.
        if X.dtype == packed.dtype and packed.expand is None and (b_const is not None or B is None):
            small = dense_for(X.shape, geometry)
            if small is not None and small.pays(X.shape[0]):
                return small(X)
        bias = b_const if b_const is not None else B
        return _conv(X, packed, bias, auto_pad, pads, strides, dilations, geometry)

    return conv_packed


def _check_conv(constants: list[Any], *, group: int = 1, kernel_shape: list[int] | None = None, **_: Any) -> None:
    """The errors of ``_prepare_conv``, without the packing (see ``kernel``'s ``check``)."""
    w = constants[1] if len(constants) > 1 else None
    if isinstance(w, np.ndarray):
        kernel_from(kernel_shape, w.shape)
        check_weight(w.shape, group)


@kernel("Conv", since=1, prepare=_prepare_conv, check=_check_conv)
def Conv(
    X: np.ndarray,
    W: np.ndarray,
    B: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: list[int] | None = None,
    group: int = 1,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    kernel_from(kernel_shape, W.shape)
    return _conv(X, PackedWeight(W, group), B, auto_pad, pads, strides, dilations)
