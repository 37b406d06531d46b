"""Per-sample normalizations: ``Y = (X - mean) / sqrt(var + epsilon) * scale + bias`` over different axes.

- InstanceNormalization: per (n, c) over the spatial axes; GroupNormalization: per (n, group).
- LayerNormalization: over axes ``[axis, rank)``, also returning Mean and ``InvStdDev = 1/sqrt(var + eps)``;
  RMSNormalization: ``X / sqrt(mean(X^2) + eps) * scale`` over the same axes.

Statistics are computed in float32 for narrower inputs (``stash_type`` 1) and natively for float64.
BatchNormalization (per channel, with running statistics) is in ``batch_norm.py``.

- LRN: ``Y = X / (bias + alpha / size * sum_{c' in window(c)} X[c']^2) ^ beta`` with the channel window
  ``[c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]`` clipped to the channels.
- LpNormalization: ``Y = X / ||X||_p`` along ``axis`` (p in {1, 2}); a zero norm gives 0, not NaN.
- MeanVarianceNormalization: ``Y = (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9)`` over ``axes``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._spatial import compute_dtype
from onnxforge.runtime.kernels.batch_norm import EPSILON as _EPSILON
from onnxforge.runtime.kernels.batch_norm import channel_shape as _channel_shape
from onnxforge.runtime.registry import kernel

# stash_type is a TensorProto element type; what the statistics of each are kept in.
_STASH_DTYPES: dict[int, np.dtype] = {1: np.dtype(np.float32), 10: np.dtype(np.float16), 11: np.dtype(np.float64)}


def _standardize(
    x: np.ndarray, axes: tuple[int, ...], epsilon: float, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalized, mean, 1/sqrt(var + eps)) in ``dtype``, statistics with keepdims."""
    xc = x.astype(dtype, copy=True)
    mean = xc.mean(axis=axes, keepdims=True)
    xc -= mean
    var = np.mean(np.square(xc), axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(var + dtype.type(epsilon))
    xc *= inv_std
    return xc, mean, inv_std


def _stash(x: np.ndarray, stash_type: int) -> np.dtype:
    """The dtype of stage one: float64 if the input or stash_type is double (the reference keeps float64 inputs in
    float64), else float32, which is at least as precise as the half-precision stash types."""
    return np.dtype(np.float64) if x.dtype == np.float64 or stash_type == 11 else np.dtype(np.float32)


@kernel("InstanceNormalization", since=6)
def InstanceNormalization(
    input: np.ndarray, scale: np.ndarray, B: np.ndarray, *, epsilon: float = _EPSILON
) -> np.ndarray:
    if input.ndim < 3:
        raise InvalidArgument(f"input must be (N, C, D1, ...), got shape {list(input.shape)}")
    dtype = compute_dtype(input.dtype)
    y, _, _ = _standardize(input, tuple(range(2, input.ndim)), epsilon, dtype)
    y *= _channel_shape(input, scale.astype(dtype, copy=False), "scale")
    y += _channel_shape(input, B.astype(dtype, copy=False), "B")
    return y.astype(input.dtype, copy=False)


def _trailing_axes(x: np.ndarray, axis: int) -> tuple[int, ...]:
    rank = x.ndim
    if not -rank <= axis < rank:
        raise InvalidArgument(f"axis {axis} is out of range for rank {rank}")
    return tuple(range(axis % rank, rank))


def _layer_norm_last_axis(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, epsilon: float) -> np.ndarray:
    """float32 LayerNormalization over the last axis: the row sums are BLAS matrix-vector products.

    numpy's reductions along a short contiguous last axis run a small loop per row; ``x @ (1/n)`` does the
    mean (and, on the squared deviations, the variance) in one vectorized call. Same two-pass formula.
    """
    weights = np.full(x.shape[-1], 1 / x.shape[-1], np.float32)
    y = np.subtract(x, np.matmul(x, weights)[..., None])
    inv_std = np.matmul(np.square(y), weights)[..., None]
    inv_std += np.float32(epsilon)
    np.sqrt(inv_std, out=inv_std)
    np.reciprocal(inv_std, out=inv_std)
    y *= inv_std
    y *= scale.astype(np.float32, copy=False)
    if bias is not None:
        y += bias.astype(np.float32, copy=False)
    return y


@kernel("LayerNormalization", since=17)
def LayerNormalization(
    X: np.ndarray,
    Scale: np.ndarray,
    B: np.ndarray | None = None,
    *,
    axis: int = -1,
    epsilon: float = _EPSILON,
    stash_type: int = 1,
    _num_outputs: int = 1,
    _output_dtypes: Sequence[np.dtype | None] | None = None,
) -> np.ndarray | tuple[np.ndarray, ...]:
    dtype = _stash(X, stash_type)
    if _num_outputs <= 1 and X.dtype == dtype == np.float32 and X.ndim and axis in (-1, X.ndim - 1) and X.size:
        return _layer_norm_last_axis(X, Scale, B, epsilon)
    y, mean, inv_std = _standardize(X, _trailing_axes(X, axis), epsilon, dtype)
    # The affine stage runs in X's precision class (float32 for halves) regardless of stash_type.
    y = y.astype(compute_dtype(X.dtype), copy=False)
    y *= Scale.astype(y.dtype, copy=False)
    if B is not None:
        y += B.astype(y.dtype, copy=False)
    result = y.astype(X.dtype, copy=False)
    if _num_outputs <= 1:
        return result
    declared = list(_output_dtypes or ()) + [None] * 3
    stats_dtype = [
        declared[1] or _STASH_DTYPES.get(stash_type, dtype),
        declared[2] or _STASH_DTYPES.get(stash_type, dtype),
    ]
    return (result, mean.astype(stats_dtype[0]), inv_std.astype(stats_dtype[1]))[:_num_outputs]


def _group_norm(
    x: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    num_groups: int,
    epsilon: float,
    per_channel: bool,
    stash_type: int,
) -> np.ndarray:
    if x.ndim < 2:
        raise InvalidArgument(f"X must be (N, C, ...), got shape {list(x.shape)}")
    n, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise InvalidArgument(f"num_groups={num_groups} must divide the {c} channels")
    expected = c if per_channel else num_groups
    if scale.shape != (expected,) or bias.shape != (expected,):
        raise InvalidArgument(
            f"scale and bias must have shape [{expected}], got {list(scale.shape)} and {list(bias.shape)}"
        )
    dtype = _stash(x, stash_type)
    grouped = x.reshape(n, num_groups, -1)
    y, _, _ = _standardize(grouped, (2,), epsilon, dtype)
    y = y.astype(compute_dtype(x.dtype), copy=False)
    if per_channel:
        y = y.reshape(n, c, -1)
    y *= scale.astype(y.dtype, copy=False)[:, None]
    y += bias.astype(y.dtype, copy=False)[:, None]
    return y.reshape(x.shape).astype(x.dtype, copy=False)


@kernel("GroupNormalization", since=18)
def GroupNormalization_18(
    X: np.ndarray, scale: np.ndarray, bias: np.ndarray, *, epsilon: float = _EPSILON, num_groups: int = 0
) -> np.ndarray:
    return _group_norm(X, scale, bias, num_groups, epsilon, per_channel=False, stash_type=1)


@kernel("GroupNormalization", since=21)
def GroupNormalization_21(
    X: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    *,
    epsilon: float = _EPSILON,
    num_groups: int = 0,
    stash_type: int = 1,
) -> np.ndarray:
    return _group_norm(X, scale, bias, num_groups, epsilon, per_channel=True, stash_type=stash_type)


@kernel("RMSNormalization", since=23)
def RMSNormalization(
    X: np.ndarray, scale: np.ndarray, *, axis: int = -1, epsilon: float = _EPSILON, stash_type: int = 1
) -> np.ndarray:
    dtype = _stash(X, stash_type)
    xc = X.astype(dtype, copy=False)
    mean_square = np.mean(np.square(xc), axis=_trailing_axes(X, axis), keepdims=True)
    y = xc / np.sqrt(mean_square + dtype.type(epsilon))
    y = y.astype(compute_dtype(X.dtype), copy=False)
    y *= scale.astype(y.dtype, copy=False)
    return y.astype(X.dtype, copy=False)


# LRN's default alpha is a FLOAT attribute: 1e-4 as float32, as onnxruntime uses it.
_ALPHA = float(np.float32(1e-4))


@kernel("LRN", since=1)
def LRN(
    X: np.ndarray, *, alpha: float = _ALPHA, beta: float = 0.75, bias: float = 1.0, size: int | None = None
) -> np.ndarray:
    if size is None or size < 1:
        raise InvalidArgument(f"size must be a positive odd window length, got {size}")
    if X.ndim < 3:
        raise InvalidArgument(f"X must be (N, C, D1, ...), got shape {list(X.shape)}")
    dtype = compute_dtype(X.dtype)
    xc = X.astype(dtype, copy=False)
    before, after = (size - 1) // 2, size // 2
    c = X.shape[1]
    # The channel-window sum of squares, as `size` shifted adds over a channel-padded copy.
    squares = np.zeros((X.shape[0], c + before + after, *X.shape[2:]), dtype=dtype)
    np.square(xc, out=squares[:, before : before + c])
    window = squares[:, 0:c].copy()
    for j in range(1, size):
        window += squares[:, j : j + c]
    window *= dtype.type(alpha / size)
    window += dtype.type(bias)
    if beta == 0.75:
        # x^0.75 = sqrt(x * sqrt(x)): two square roots beat a general power several times over.
        np.sqrt(window * np.sqrt(window), out=window)
    else:
        np.power(window, dtype.type(beta), out=window)
    return (xc / window).astype(X.dtype, copy=False)


@kernel("LpNormalization", since=1)
def LpNormalization(input: np.ndarray, *, axis: int = -1, p: int = 2) -> np.ndarray:
    if not -input.ndim <= axis < max(input.ndim, 1):
        raise InvalidArgument(f"axis {axis} is out of range for rank {input.ndim}")
    dtype = compute_dtype(input.dtype)
    xc = input.astype(dtype, copy=False)
    if p == 2:
        norm = np.sqrt(np.sum(np.square(xc), axis=axis, keepdims=True))
    elif p == 1:
        norm = np.sum(np.abs(xc), axis=axis, keepdims=True)
    else:
        raise InvalidArgument(f"p must be 1 or 2, got {p}")
    safe = np.where(norm == 0, dtype.type(1), norm)
    y = np.where(norm == 0, dtype.type(0), xc / safe)
    return y.astype(input.dtype, copy=False)


@kernel("MeanVarianceNormalization", since=9)
def MeanVarianceNormalization(X: np.ndarray, *, axes: list[int] | None = None) -> np.ndarray:
    reduce_axes = tuple(axes) if axes is not None else (0, 2, 3)
    rank = X.ndim
    if any(not -rank <= a < rank for a in reduce_axes):
        raise InvalidArgument(f"axes {list(reduce_axes)} are out of range for rank {rank}")
    dtype = compute_dtype(X.dtype)
    xc = X.astype(dtype, copy=True)
    mean = xc.mean(axis=reduce_axes, keepdims=True)
    xc -= mean
    # Var from the centred values equals the spec's E[X^2] - E[X]^2 but cannot go negative by rounding.
    std = np.sqrt(np.mean(np.square(xc), axis=reduce_axes, keepdims=True))
    xc /= std + dtype.type(1e-9)
    return xc.astype(X.dtype, copy=False)
