"""MaxPool: ``Y[n, c, o] = max_{j < kernel} Xpad[n, c, o * strides + j * dilations]``, pads reading -inf.

Without the Indices output the window maximum is separable and goes, fastest first, to the flat passes
over whole images (``_pool_flat``; padded small images through an edge-repeating copy), the row-wise
passes that never copy the pads (``_pool_windows``), or a padded copy; its geometry is settled once per input shape at plan-build time (``_prepare_max_pool``). The
Indices output needs the joint argmax, so it walks every kernel position, keeping the first maximum in
row-major window order (as onnxruntime does). The shared window geometry lives in ``pool.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge.runtime.kernels._pool_flat import max_windows_edge, max_windows_flat
from onnxforge.runtime.kernels._pool_windows import max_windows_unpadded
from onnxforge.runtime.kernels._spatial import pad_for_windows, prod, window_slice
from onnxforge.runtime.kernels.pool import Ints, reduce_windows, window_geometry
from onnxforge.runtime.registry import kernel

# Below this many elements the plain tap-by-tap maximum (a padded copy if any pad is read) goes first: there
# the other paths' Python costs more than the arithmetic (2x2 pool of 16x8x8: 15 -> 8 us; 3x3 stride-2 of
# 16x28x28: 30 -> 20 us; 64x14x14 with pads: 40 -> 36 us); from ~40,000 on they win.
_TAP_WISE_MAX_SIZE = 16_384
# Input shapes whose pool geometry a prepared MaxPool remembers (others are computed per run).
_GEOMETRY_CACHE_SIZE = 16


def _lowest(dtype: np.dtype) -> float | int:
    return np.iinfo(dtype).min if dtype.kind in "iu" else -np.inf


def _max_pool(
    x: np.ndarray,
    *,
    auto_pad: str,
    ceil_mode: int,
    dilations: list[int] | None,
    kernel_shape: list[int] | None,
    pads: list[int] | None,
    storage_order: int,
    strides: list[int] | None,
    with_indices: bool,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    k, s, d, begins, _, out = window_geometry(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    if not with_indices:
        return _max_windows(x, k, s, d, begins, out)
    xc = x if x.dtype.kind in "fiu" else x.astype(np.float32)
    xp = pad_for_windows(xc, begins, out, k, s, d, _lowest(xc.dtype))
    best: np.ndarray | None = None
    which = np.zeros((*x.shape[:2], *out), dtype=np.int64)
    offsets = list(itertools.product(*(range(ki) for ki in k)))
    for index, offset in enumerate(offsets):
        view = xp[window_slice(offset, out, s, d)]
        if best is None:
            best = view.copy()
            continue
        better = view > best
        np.copyto(best, view, where=better)
        which[better] = index
    assert best is not None
    return (best if best.dtype == x.dtype else best.astype(x.dtype)), _max_indices(
        which, x.shape, k, s, d, begins, out, storage_order
    )


def _max_windows(x: np.ndarray, k: Ints, s: Ints, d: Ints, begins: Ints, out: Ints) -> np.ndarray:
    # ml_dtypes (bfloat16) arrays reduce through float32; max is exact in any wider type.
    xc = x if x.dtype.kind in "fiu" else x.astype(np.float32)
    if xc.size < _TAP_WISE_MAX_SIZE:
        y = reduce_windows(pad_for_windows(xc, begins, out, k, s, d, _lowest(xc.dtype)), k, s, d, out, np.maximum)
        return y if y.dtype == x.dtype else y.astype(x.dtype)
    y = max_windows_flat(xc, k, s, d, begins, out)
    if y is None:
        y = max_windows_edge(xc, k, s, d, begins, out)
    if y is None:
        y = max_windows_unpadded(xc, k, s, d, begins, out)
    if y is None:
        y = reduce_windows(pad_for_windows(xc, begins, out, k, s, d, _lowest(xc.dtype)), k, s, d, out, np.maximum)
    return y if y.dtype == x.dtype else y.astype(x.dtype)


def _prepare_max_pool(constants: list[Any], **attrs: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """MaxPool without Indices, its geometry settled once per input shape rather than on every run."""
    if attrs.get("_num_outputs", 1) > 1:
        return None
    geometries: dict[tuple[int, ...], tuple[Ints, Ints, Ints, Ints, Ints]] = {}

    def max_pool(X: np.ndarray) -> np.ndarray:
        geometry = geometries.get(X.shape)
        if geometry is None:
            k, s, d, begins, _, out = window_geometry(
                X,
                attrs.get("kernel_shape"),
                attrs.get("strides"),
                attrs.get("dilations"),
                attrs.get("pads"),
                attrs.get("auto_pad", "NOTSET"),
                attrs.get("ceil_mode", 0),
            )
            geometry = (k, s, d, begins, out)
            if len(geometries) < _GEOMETRY_CACHE_SIZE:
                geometries[X.shape] = geometry
        return _max_windows(X, *geometry)

    return max_pool


def _max_indices(
    which: np.ndarray, shape: Ints, k: Ints, s: Ints, d: Ints, begins: Ints, out: Ints, storage_order: int
) -> np.ndarray:
    """Flat indices into X of the chosen window positions (column-major spatial dims if storage_order=1)."""
    spatial = shape[2:]
    rank = len(k)
    coords = np.unravel_index(which, k)
    if storage_order:
        steps = [prod(spatial[:i]) for i in range(rank)]
    else:
        steps = [prod(spatial[i + 1 :]) for i in range(rank)]
    n, c = shape[:2]
    flat = (np.arange(n * c, dtype=np.int64) * prod(spatial)).reshape(n, c, *(1,) * rank)
    for axis in range(rank):
        grid_shape = [1] * rank
        grid_shape[axis] = out[axis]
        origin = (np.arange(out[axis], dtype=np.int64) * s[axis] - begins[axis]).reshape(grid_shape)
        flat = flat + (origin + coords[axis] * d[axis]) * steps[axis]
    return flat


@kernel("MaxPool", since=1, prepare=_prepare_max_pool)
def MaxPool_1(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    return _max_pool(
        X,
        auto_pad=auto_pad,
        ceil_mode=0,
        dilations=None,
        kernel_shape=kernel_shape,
        pads=pads,
        storage_order=0,
        strides=strides,
        with_indices=False,
    )


@kernel("MaxPool", since=8, prepare=_prepare_max_pool)
def MaxPool_8(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    storage_order: int = 0,
    strides: list[int] | None = None,
    _num_outputs: int = 1,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    return _max_pool(
        X,
        auto_pad=auto_pad,
        ceil_mode=0,
        dilations=None,
        kernel_shape=kernel_shape,
        pads=pads,
        storage_order=storage_order,
        strides=strides,
        with_indices=_num_outputs > 1,
    )


@kernel("MaxPool", since=10, prepare=_prepare_max_pool)
def MaxPool_10(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    dilations: list[int] | None = None,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    storage_order: int = 0,
    strides: list[int] | None = None,
    _num_outputs: int = 1,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    return _max_pool(
        X,
        auto_pad=auto_pad,
        ceil_mode=ceil_mode,
        dilations=dilations,
        kernel_shape=kernel_shape,
        pads=pads,
        storage_order=storage_order,
        strides=strides,
        with_indices=_num_outputs > 1,
    )
