"""Window pools: ``Y[n, c, o] = reduce_{j < kernel} Xpad[n, c, o * strides + j * dilations]``.

AveragePool reduces with a sum divided by the number of counted positions (pads count only with
count_include_pad; positions past the declared end pad never do), LpPool with ``(sum |x|^p)^(1/p)``
(padding adds 0). Sums are separable, so each spatial axis is reduced in turn over its k shifted strided
slices: k1 + k2 + ... whole-tensor ops instead of k1 * k2 * ..., and no Python loop over pixels.
:func:`window_geometry` and :func:`reduce_windows` are shared with MaxPool (``max_pool.py``); global pools,
MaxUnpool and MaxRoiPool live in ``pool_special``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._pool_matrix import prepare_average_pool
from onnxforge.runtime.kernels._spatial import (
    compute_dtype,
    pad_for_windows,
    pool_geometry,
    spatial_params,
    window_counts,
)
from onnxforge.runtime.registry import kernel

Ints = tuple[int, ...]


def window_geometry(
    x: np.ndarray,
    kernel_shape: list[int] | None,
    strides: list[int] | None,
    dilations: list[int] | None,
    pads: list[int] | None,
    auto_pad: str,
    ceil_mode: int,
) -> tuple[Ints, Ints, Ints, Ints, Ints, Ints]:
    if not kernel_shape:
        raise InvalidArgument("kernel_shape is required")
    rank = len(kernel_shape)
    if x.ndim != rank + 2:
        raise InvalidArgument(f"input must have rank {rank + 2} for a {rank}-D kernel_shape, got shape {list(x.shape)}")
    k, s, d = spatial_params(rank, kernel_shape, strides, dilations)
    begins, ends, out = pool_geometry(auto_pad, x.shape[2:], k, s, d, pads, ceil_mode)
    return k, s, d, begins, ends, out


def reduce_windows(xp: np.ndarray, k: Ints, s: Ints, d: Ints, out: Ints, op: Callable[..., np.ndarray]) -> np.ndarray:
    """Separable window reduction of a padded input, one spatial axis at a time."""
    y = xp
    for axis in range(len(k)):
        acc: np.ndarray | None = None
        for j in range(k[axis]):
            index = [slice(None)] * y.ndim
            start = j * d[axis]
            index[2 + axis] = slice(start, start + (out[axis] - 1) * s[axis] + 1, s[axis])
            view = y[tuple(index)]
            if acc is None:
                acc = view.copy()
            else:
                op(acc, view, out=acc)
        assert acc is not None
        y = acc
    return y


def _sum_pool(
    x: np.ndarray,
    *,
    auto_pad: str,
    ceil_mode: int,
    dilations: list[int] | None,
    kernel_shape: list[int] | None,
    pads: list[int] | None,
    strides: list[int] | None,
    count_include_pad: int | None,
    p: float | None = None,
) -> np.ndarray:
    """AveragePool (``p is None``; divided by the counted positions) or LpPool (``p``-norm of each window)."""
    k, s, d, begins, ends, out = window_geometry(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    xc = x.astype(compute_dtype(x.dtype), copy=False)
    if p is not None:
        xc = np.square(xc) if p == 2 else (np.abs(xc) if p == 1 else np.abs(xc) ** p)
    xp = pad_for_windows(xc, begins, out, k, s, d, 0)
    y = reduce_windows(xp, k, s, d, out, np.add)
    if p is None:
        divisor: np.ndarray | None = None
        for axis, n in enumerate(x.shape[2:]):
            counts = window_counts(
                n, begins[axis], ends[axis], out[axis], k[axis], s[axis], d[axis], bool(count_include_pad)
            )
            shaped = counts.reshape([-1 if i == axis else 1 for i in range(len(k))])
            divisor = shaped if divisor is None else divisor * shaped
        assert divisor is not None
        # An all-padding window (possible with dilations) averages nothing: onnxruntime gives 0, not NaN.
        y /= np.maximum(divisor, 1).astype(y.dtype)
    elif p == 2:
        np.sqrt(y, out=y)
    elif p != 1:
        np.power(y, 1.0 / p, out=y)
    return y if y.dtype == x.dtype else y.astype(x.dtype)


@kernel("AveragePool", since=1, prepare=lambda constants, **attrs: prepare_average_pool(AveragePool_1, attrs))
def AveragePool_1(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    return _sum_pool(
        X,
        auto_pad=auto_pad,
        ceil_mode=0,
        dilations=None,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
        count_include_pad=0,
    )


@kernel("AveragePool", since=7, prepare=lambda constants, **attrs: prepare_average_pool(AveragePool_7, attrs))
def AveragePool_7(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    count_include_pad: int = 0,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    return _sum_pool(
        X,
        auto_pad=auto_pad,
        ceil_mode=0,
        dilations=None,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
        count_include_pad=count_include_pad,
    )


@kernel("AveragePool", since=10, prepare=lambda constants, **attrs: prepare_average_pool(AveragePool_10, attrs))
def AveragePool_10(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    count_include_pad: int = 0,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    return _sum_pool(
        X,
        auto_pad=auto_pad,
        ceil_mode=ceil_mode,
        dilations=None,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
        count_include_pad=count_include_pad,
    )


@kernel("AveragePool", since=19, prepare=lambda constants, **attrs: prepare_average_pool(AveragePool_19, attrs))
def AveragePool_19(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    count_include_pad: int = 0,
    dilations: list[int] | None = None,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    return _sum_pool(
        X,
        auto_pad=auto_pad,
        ceil_mode=ceil_mode,
        dilations=dilations,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
        count_include_pad=count_include_pad,
    )


@kernel("LpPool", since=1)
def LpPool_1(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    kernel_shape: list[int] | None = None,
    p: float = 2.0,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    return _sum_pool(
        X,
        auto_pad=auto_pad,
        ceil_mode=0,
        dilations=None,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
        count_include_pad=None,
        p=float(p),
    )


@kernel("LpPool", since=2)
def LpPool_2(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    kernel_shape: list[int] | None = None,
    p: int = 2,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    return LpPool_1(X, auto_pad=auto_pad, kernel_shape=kernel_shape, p=p, pads=pads, strides=strides)


@kernel("LpPool", since=18)
def LpPool_18(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    dilations: list[int] | None = None,
    kernel_shape: list[int] | None = None,
    p: int = 2,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    return _sum_pool(
        X,
        auto_pad=auto_pad,
        ceil_mode=ceil_mode,
        dilations=dilations,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
        count_include_pad=None,
        p=float(p),
    )
