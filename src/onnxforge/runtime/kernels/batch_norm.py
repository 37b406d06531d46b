"""BatchNormalization: ``Y = (X - mean) / sqrt(var + epsilon) * scale + bias`` per channel.

With given running statistics (inference), or batch statistics in training mode, which also updates
``running = running * momentum + batch * (1 - momentum)``. Inference folds to ``X * a + b`` with
``a = scale / sqrt(var + eps)``, ``b = bias - mean * a``, computed once at plan-build time when the four
parameters are constants. The per-sample normalizations are in ``normalization.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._spatial import compute_dtype
from onnxforge.runtime.registry import kernel

# The spec's default epsilon (this op's and normalization.py's) is a FLOAT attribute: 1e-5 rounded to
# float32, as onnxruntime and the reference use it (it matters in float64).
EPSILON = float(np.float32(1e-5))


def channel_shape(x: np.ndarray, param: np.ndarray, what: str) -> np.ndarray:
    """A per-channel parameter shaped to broadcast over (N, C, D1, ...); spatial=0 params keep their dims."""
    if x.ndim < 2:
        raise InvalidArgument(f"input must be (N, C, ...), got shape {list(x.shape)}")
    c = x.shape[1]
    if param.ndim == 1:
        if param.shape[0] != c:
            raise InvalidArgument(f"{what} must have {c} entries (one per channel), got shape {list(param.shape)}")
        return param.reshape(c, *(1,) * (x.ndim - 2))
    if param.shape != x.shape[1:]:
        raise InvalidArgument(f"{what} must have shape [{c}] or {list(x.shape[1:])}, got {list(param.shape)}")
    return param


def _bn_fold(
    x_like: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    dtype = compute_dtype(x_like.dtype)
    a = scale.astype(dtype) / np.sqrt(var.astype(dtype) + dtype.type(epsilon))
    b = bias.astype(dtype) - mean.astype(dtype) * a
    return channel_shape(x_like, a, "scale"), channel_shape(x_like, b, "B")


def _bn_apply(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    y = x.astype(a.dtype, copy=False) * a
    y += b
    return y if y.dtype == x.dtype else y.astype(x.dtype)


def _bn_training(
    x: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    epsilon: float,
    momentum: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(Y, running_mean, running_var, batch_mean, batch_var); the variance is the biased (population) one."""
    dtype = compute_dtype(x.dtype)
    axes = (0, *range(2, x.ndim))
    xc = x.astype(dtype, copy=False)
    batch_mean = xc.mean(axis=axes)
    batch_var = xc.var(axis=axes)
    a, b = _bn_fold(x, scale, bias, batch_mean, batch_var, epsilon)
    running_mean = mean.astype(dtype) * dtype.type(momentum) + batch_mean * dtype.type(1 - momentum)
    running_var = var.astype(dtype) * dtype.type(momentum) + batch_var * dtype.type(1 - momentum)
    stats = mean.dtype
    return (
        _bn_apply(x, a, b),
        running_mean.astype(stats),
        running_var.astype(stats),
        batch_mean.astype(stats),
        batch_var.astype(stats),
    )


def _prepare_bn(constants: list[Any], *, epsilon: float = EPSILON, **attrs: Any) -> Callable[..., Any] | None:
    # Only inference folds: training (training_mode, or opset<14's extra outputs) needs batch statistics.
    training = attrs.get("training_mode", 0) or (attrs.get("_num_outputs", 1) > 1 and attrs.get("is_test", 0) == 0)
    if training or len(constants) < 5 or not all(isinstance(c, np.ndarray) for c in constants[1:5]):
        return None
    scale, bias, mean, var = constants[1:5]
    folded: dict[tuple[np.dtype, int], tuple[np.ndarray, np.ndarray]] = {}

    def batch_norm_folded(X: np.ndarray, *_params: np.ndarray) -> np.ndarray:
        key = (X.dtype, X.ndim)
        if key not in folded:
            folded[key] = _bn_fold(X, scale, bias, mean, var, epsilon)
        return _bn_apply(X, *folded[key])

    return batch_norm_folded


def _bn(
    x: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    epsilon: float,
    momentum: float,
    outputs: int,
) -> np.ndarray | tuple[np.ndarray, ...]:
    if outputs <= 1:
        return _bn_apply(x, *_bn_fold(x, scale, bias, mean, var, epsilon))
    return _bn_training(x, scale, bias, mean, var, epsilon, momentum)[:outputs]


@kernel("BatchNormalization", since=6, prepare=_prepare_bn)
def BatchNormalization_6(
    X: np.ndarray,
    scale: np.ndarray,
    B: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    *,
    epsilon: float = EPSILON,
    is_test: int = 0,
    momentum: float = 0.9,
    spatial: int = 1,
    _num_outputs: int = 1,
) -> np.ndarray | tuple[np.ndarray, ...]:
    return _bn(X, scale, B, mean, var, epsilon, momentum, 1 if is_test else _num_outputs)


@kernel("BatchNormalization", since=7, prepare=_prepare_bn)
def BatchNormalization_7(
    X: np.ndarray,
    scale: np.ndarray,
    B: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    *,
    epsilon: float = EPSILON,
    momentum: float = 0.9,
    spatial: int = 1,
    _num_outputs: int = 1,
) -> np.ndarray | tuple[np.ndarray, ...]:
    return _bn(X, scale, B, mean, var, epsilon, momentum, _num_outputs)


@kernel("BatchNormalization", since=9, prepare=_prepare_bn)
def BatchNormalization_9(
    X: np.ndarray,
    scale: np.ndarray,
    B: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    *,
    epsilon: float = EPSILON,
    momentum: float = 0.9,
    _num_outputs: int = 1,
) -> np.ndarray | tuple[np.ndarray, ...]:
    return _bn(X, scale, B, mean, var, epsilon, momentum, _num_outputs)


@kernel("BatchNormalization", since=14, prepare=_prepare_bn)
def BatchNormalization_14(
    X: np.ndarray,
    scale: np.ndarray,
    B: np.ndarray,
    input_mean: np.ndarray,
    input_var: np.ndarray,
    *,
    epsilon: float = EPSILON,
    momentum: float = 0.9,
    training_mode: int = 0,
    _num_outputs: int = 1,
) -> np.ndarray | tuple[np.ndarray, ...]:
    if not training_mode:
        return _bn_apply(X, *_bn_fold(X, scale, B, input_mean, input_var, epsilon))
    y, running_mean, running_var, _, _ = _bn_training(X, scale, B, input_mean, input_var, epsilon, momentum)
    return (y, running_mean, running_var)[:_num_outputs] if _num_outputs > 1 else y
