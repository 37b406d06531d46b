"""Activations: the ReLU family, sigmoid-like and smooth functions, Gelu, Mish, Swish, Shrink, and
Softmax / LogSoftmax / Hardmax.

float16 and the ml_dtypes floats (bfloat16, float8) are computed in float32 and cast back once: NumPy would
round after every step of a composite formula (and promotes bfloat16 with a Python float to float32 anyway).
Softmax and LogSoftmax are the exception, computed in the input's type (see the note above ``_softmax``).

Softmax, LogSoftmax and Hardmax changed meaning at opset 13. Before, the input was seen as a 2-D matrix
``[prod(shape[:axis]), prod(shape[axis:])]`` (default axis 1) and each row normalised, i.e. the reduction
runs over *all* axes from ``axis`` on; from 13 it runs over the single axis ``axis`` (default -1).
"""

from __future__ import annotations

import math

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._relu import relu
from onnxforge.runtime.kernels.elementwise import as_array
from onnxforge.runtime.kernels.math_unary import erf
from onnxforge.runtime.registry import kernel

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_SQRT_HALF = math.sqrt(0.5)
# FLOAT attributes are float32: defaults spelled as the float32 value, so an omitted attribute acts exactly
# like one set to its default (it matters for float64 inputs).
_F32_0_2 = float(np.float32(0.2))
_F32_0_01 = float(np.float32(0.01))


def _wide(x: np.ndarray) -> np.ndarray:
    """x in a type NumPy computes well in: float32 for float16 and the ml_dtypes floats (kind 'V')."""
    return x.astype(np.float32) if x.dtype.kind == "V" or x.dtype == np.float16 else x


def _back(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    return as_array(result).astype(like.dtype, copy=False)


# Performance note: np.where over a full tensor is ~10x slower than a ufunc, and np.logaddexp slower still, so
# the hot activations are written with maximum/minimum arithmetic instead (same values, NaN included).


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # e^min(x,0) / (1 + e^-|x|): neither exp overflows, and tiny results stay accurate for very negative x.
    return np.exp(np.minimum(x, 0)) / (1 + np.exp(-np.abs(x)))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))  # log(1 + e^x) without overflow


def _negative_part_times(x: np.ndarray, factor: object) -> np.ndarray:
    """``factor * x`` where x < 0, else x (for factor finite): max(x, 0) + factor * min(x, 0)."""
    return np.maximum(x, 0) + factor * np.minimum(x, 0)


# consumed_inputs (opset 1 only) was a buffer-reuse hint with no effect on the result.


@kernel("Relu", since=1)
def Relu(x: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    if x.dtype.kind == "f":
        return as_array(relu(x))  # see _relu.py: a faster np.maximum than against a scalar
    return as_array(np.maximum(x, x.dtype.type(0)))


@kernel("LeakyRelu", since=1)
def LeakyRelu(x: np.ndarray, *, alpha: float = _F32_0_01, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return _back(_negative_part_times(_wide(x), alpha), x)


@kernel("PRelu", since=7)
def PRelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    # slope broadcasts to x (unidirectionally); integer types multiply in their own type.
    return _back(_negative_part_times(x, slope), x)


@kernel("PRelu", since=1)
def PRelu_1(x: np.ndarray, slope: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    # Before opset 7 a 1-D slope of length C was per channel (axis 1), not aligned with the last axis.
    if slope.ndim == 1 and x.ndim > 2 and slope.shape[0] == x.shape[1] and slope.shape[0] != 1:
        slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))
    return PRelu(x, slope)


@kernel("Elu", since=1)
def Elu(x: np.ndarray, *, alpha: float = 1.0, consumed_inputs: list[int] | None = None) -> np.ndarray:
    w = _wide(x)
    return _back(np.maximum(w, 0) + alpha * np.expm1(np.minimum(w, 0)), x)


@kernel("Selu", since=1)
def Selu(
    x: np.ndarray,
    *,
    alpha: float = 1.67326319217681884765625,
    gamma: float = 1.05070102214813232421875,
    consumed_inputs: list[int] | None = None,
) -> np.ndarray:
    w = _wide(x)
    return _back(gamma * (np.maximum(w, 0) + alpha * np.expm1(np.minimum(w, 0))), x)


@kernel("Celu", since=12)
def Celu(x: np.ndarray, *, alpha: float = 1.0) -> np.ndarray:
    w = _wide(x)
    return _back(np.maximum(w, 0) + np.minimum(0, alpha * np.expm1(np.minimum(w, 0) / alpha)), x)


@kernel("Sigmoid", since=1)
def Sigmoid(x: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return _back(_sigmoid(_wide(x)), x)


@kernel("HardSigmoid", since=1)
def HardSigmoid(
    x: np.ndarray, *, alpha: float = _F32_0_2, beta: float = 0.5, consumed_inputs: list[int] | None = None
) -> np.ndarray:
    w = _wide(x)
    return _back(np.clip(w * alpha + beta, 0, 1), x)


@kernel("HardSwish", since=14)
def HardSwish(x: np.ndarray) -> np.ndarray:
    w = _wide(x)
    return _back(w * np.clip(w * (1 / 6) + 0.5, 0, 1), x)


@kernel("Softplus", since=1)
def Softplus(x: np.ndarray) -> np.ndarray:
    return _back(_softplus(_wide(x)), x)


@kernel("Softsign", since=1)
def Softsign(x: np.ndarray) -> np.ndarray:
    w = _wide(x)
    return _back(w / (1 + np.abs(w)), x)


@kernel("Tanh", since=1)
def Tanh(x: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return _back(np.tanh(_wide(x)), x)


# erf(z) ~ z * P(z^2) / Q(z^2) on z clamped to [-4, 4] (beyond, erf is +-1 in float32): the rational
# approximation Eigen and XLA use for float32, within a few ulp and free of exp, which NumPy runs unvectorized
# on AVX2 machines (~3 ns an element, 15x a multiply). Below, z = x / sqrt2 is folded into the coefficients
# (P and Q in u = x^2), and so is GELU's 0.5, giving ``Phi(x) = 0.5 + x * P'(u) / Q'(u)``.
_ERF_P = (
    -1.60960333262415e-02,
    -2.95459980854025e-03,
    -7.34990630326855e-04,
    -5.69250639462346e-05,
    -2.10102402082508e-06,
    2.77068142495902e-08,
    -2.72614225801306e-10,
)
_ERF_Q = (
    -1.42647390514189e-02,
    -7.37332916720468e-03,
    -1.68282697438203e-03,
    -2.13374055278905e-04,
    -1.45660718464996e-05,
)
# Coefficient k multiplies z^(2k) = u^k / 2^k; P' also takes the 0.5 / sqrt2 of ``0.5 * erf(x / sqrt2)``.
_GELU_P = tuple(np.float32(c / 2**k * 0.5 * _SQRT_HALF) for k, c in enumerate(_ERF_P))
_GELU_Q = tuple(np.float32(c / 2**k) for k, c in enumerate(_ERF_Q))
_GELU_CLAMP = np.float32(4 / _SQRT_HALF)  # |x| = 4 sqrt2, i.e. |z| = 4


def gelu_float32(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Exact (erf) GELU ``x * Phi(x)`` of a float32 array, in float32: 26 NumPy passes and no exp.

    ``out`` (may be ``x`` itself) receives the result; absolute error below 2e-6 (the ``0.5 + 0.5 erf``
    form loses the relative accuracy of the negative tail, as onnxruntime's does; past -4 sqrt2 it is 0).
    """
    if x.ndim == 0:  # ufuncs hand back scalars for 0-d arrays, and scalars cannot be written into
        result = gelu_float32(x.reshape(1)).reshape(())
        if out is not None:
            out[...] = result
            return out
        return result
    xc = np.clip(x, -_GELU_CLAMP, _GELU_CLAMP)
    u = np.square(xc)
    p = np.multiply(u, _GELU_P[6])
    for coefficient in _GELU_P[5:0:-1]:
        p += coefficient
        p *= u
    p += _GELU_P[0]
    q = np.multiply(u, _GELU_Q[4])
    for coefficient in _GELU_Q[3:0:-1]:
        q += coefficient
        q *= u
    q += _GELU_Q[0]
    p /= q
    p *= xc
    p += np.float32(0.5)
    # Phi(x) in [0, 1]: past the clamp the rational form overshoots by an ulp, and |x| would scale that up.
    np.clip(p, np.float32(0), np.float32(1), out=p)
    return np.multiply(p, x, out=p if out is None else out)


@kernel("Gelu", since=20)
def Gelu(x: np.ndarray, *, approximate: str = "none") -> np.ndarray:
    w = _wide(x)
    if approximate == "tanh":
        return _back(0.5 * w * (1 + np.tanh(_SQRT_2_OVER_PI * (w + 0.044715 * w * w * w))), x)
    if approximate == "none":
        if w.dtype == np.float32:
            return _back(gelu_float32(w), x)
        return _back(0.5 * w * (1 + erf(w * _SQRT_HALF)), x)
    raise InvalidArgument(f"Gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


@kernel("Mish", since=18)
def Mish(x: np.ndarray) -> np.ndarray:
    w = _wide(x)
    return _back(w * np.tanh(_softplus(w)), x)


@kernel("Swish", since=24)
def Swish(x: np.ndarray, *, alpha: float = 1.0) -> np.ndarray:
    w = _wide(x)
    return _back(w * _sigmoid(w * alpha), x)


@kernel("ThresholdedRelu", since=10)
def ThresholdedRelu(x: np.ndarray, *, alpha: float = 1.0) -> np.ndarray:
    return _back(np.where(x > alpha, x, 0), x)


@kernel("Shrink", since=9)
def Shrink(input: np.ndarray, *, bias: float = 0.0, lambd: float = 0.5) -> np.ndarray:
    # Integer inputs are allowed: the float arithmetic is cast back to the input type.
    w = _wide(input)
    return _back(np.where(w < -lambd, w + bias, np.where(w > lambd, w - bias, 0)), input)


def _trailing_axes(x: np.ndarray, axis: int) -> tuple[int, ...]:
    """The axes the opset < 13 operators flatten into one row: ``axis`` and everything after it."""
    start = axis + x.ndim if axis < 0 else axis
    if not 0 <= start <= x.ndim:
        raise InvalidArgument(f"axis {axis} is out of range for a tensor of rank {x.ndim}")
    return tuple(range(start, x.ndim))


# Softmax and LogSoftmax compute in the input's own type, unlike the other activations: the spec defines them
# as a composition of ops in T, and the conformance data (Attention's softmax, in float16 and bfloat16) is
# rounded that way. onnxruntime computes float16 in float32 and differs from this by about one ulp.


def softmax_last_axis_into(e: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of a non-empty float32/float64 array the caller owns, computed in place.

    The row sums are a BLAS matrix-vector product with ones: numpy's own reduction along a short contiguous
    last axis runs a small loop per row, several times slower.
    """
    e -= np.max(e, axis=-1, keepdims=True)
    np.exp(e, out=e)
    e /= np.matmul(e, np.ones(e.shape[-1], e.dtype))[..., None]
    return e


def _softmax(x: np.ndarray, axes: int | tuple[int, ...]) -> np.ndarray:
    if x.dtype in (np.float32, np.float64) and x.ndim and x.size and axes in (-1, x.ndim - 1, (x.ndim - 1,)):
        return softmax_last_axis_into(np.array(x, copy=True))
    e = as_array(np.subtract(x, np.max(x, axis=axes, keepdims=True)))
    np.exp(e, out=e)  # e is our own temporary: one allocation instead of two
    e /= np.sum(e, axis=axes, keepdims=True)
    return as_array(e)


def _log_softmax(x: np.ndarray, axes: int | tuple[int, ...]) -> np.ndarray:
    shifted = x - np.max(x, axis=axes, keepdims=True)
    return as_array(shifted - np.log(np.sum(np.exp(shifted), axis=axes, keepdims=True)))


def _hardmax(x: np.ndarray, axis: int) -> np.ndarray:
    out = np.zeros_like(x)
    if x.size == 0:
        return out
    index = np.argmax(x, axis=axis, keepdims=True)  # the first maximum wins ties, as the spec says
    np.put_along_axis(out, index, 1, axis=axis)
    return out


@kernel("Softmax", since=13)
def Softmax(input: np.ndarray, *, axis: int = -1) -> np.ndarray:
    return _softmax(input, axis)


@kernel("Softmax", since=1)
def Softmax_1(input: np.ndarray, *, axis: int = 1) -> np.ndarray:
    return _softmax(input, _trailing_axes(input, axis))


@kernel("LogSoftmax", since=13)
def LogSoftmax(input: np.ndarray, *, axis: int = -1) -> np.ndarray:
    return _log_softmax(input, axis)


@kernel("LogSoftmax", since=1)
def LogSoftmax_1(input: np.ndarray, *, axis: int = 1) -> np.ndarray:
    return _log_softmax(input, _trailing_axes(input, axis))


@kernel("Hardmax", since=13)
def Hardmax(input: np.ndarray, *, axis: int = -1) -> np.ndarray:
    return _hardmax(input, axis)


@kernel("Hardmax", since=1)
def Hardmax_1(input: np.ndarray, *, axis: int = 1) -> np.ndarray:
    axes = _trailing_axes(input, axis)
    rows = math.prod(input.shape[: input.ndim - len(axes)])
    flat = input.reshape(rows, math.prod(input.shape[input.ndim - len(axes) :]))
    return _hardmax(flat, 1).reshape(input.shape)
