"""Unary math: Neg, Abs, Sqrt, Exp, Log, Reciprocal, Floor, Ceil, Round, Sign, trigonometric and hyperbolic
functions, and Erf.

NumPy has no erf, and the engine must not need scipy, so ``erf`` evaluates two polynomial fits in float64:

- ``|x| < 1``: ``erf(x) = x * P(x^2)``;
- ``1 <= |x| <= 6``: ``erf(|x|) = 1 - exp(-x^2) * Q(t)`` with ``t = 1 / (1 + |x| / 2)`` (the scaled
  complementary function ``erfc(x) exp(x^2)`` is smooth and slowly varying in t); beyond 6, erf is 1 in float64.

P and Q are Chebyshev interpolants of ``math.erf`` / ``math.erfc``, computed once at import (a few dozen
calls): degrees 10 and 14 for float64 inputs (a few ulp), 6 and 7 for narrower floats (relative error
below 2e-9, far under float32's half-ulp), which halves the work.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.polynomial import chebyshev

from onnxforge.runtime.kernels.elementwise import as_array
from onnxforge.runtime.registry import kernel

_ERF_SPLIT = 1.0
_ERF_SATURATION = 6.0  # erfc(6) ~ 2e-17: erf rounds to 1 in float64 from here on

Series = tuple[np.ndarray, float, float]  # power-basis coefficients, then the map t -> offset + scale * t


def _power_series(fn: Callable[[np.ndarray], np.ndarray], degree: int, lo: float, hi: float) -> Series:
    """Power-basis coefficients (lowest first) of fn's Chebyshev interpolant, in s = off + scale * t."""
    fit = chebyshev.Chebyshev.interpolate(fn, degree, domain=[lo, hi])
    offset, scale = fit.mapparms()
    return chebyshev.cheb2poly(fit.coef), float(offset), float(scale)


def _erf_over_x(u: np.ndarray) -> np.ndarray:
    x = np.sqrt(u)
    return np.array([math.erf(v) / v if v > 0 else 2 / math.sqrt(math.pi) for v in x])


def _scaled_erfc(t: np.ndarray) -> np.ndarray:
    x = 2 * (1 / t - 1)
    return np.array([math.erfc(v) * math.exp(v * v) for v in x])


def _erf_fits(small_degree: int, large_degree: int) -> tuple[Series, Series]:
    small = _power_series(_erf_over_x, small_degree, 0.0, _ERF_SPLIT**2)
    large = _power_series(_scaled_erfc, large_degree, 1 / (1 + _ERF_SATURATION / 2), 1 / (1 + _ERF_SPLIT / 2))
    return small, large


_ERF_FITS_DOUBLE = _erf_fits(10, 14)
_ERF_FITS_SINGLE = _erf_fits(6, 7)


def _horner(series: Series, t: np.ndarray) -> np.ndarray:
    coefficients, offset, scale = series
    s = offset + scale * t
    result = np.full_like(s, coefficients[-1])
    for c in coefficients[-2::-1]:
        # In place on our own temporary: a fresh array per step costs more in page faults than the math.
        result *= s
        result += c
    return result


def erf(x: np.ndarray) -> np.ndarray:
    """The error function of ``x`` element-wise, in x's dtype (computed in float64)."""
    dtype = np.asarray(x).dtype
    small, large = _ERF_FITS_DOUBLE if dtype.itemsize >= 8 else _ERF_FITS_SINGLE
    x64 = np.asarray(x, dtype=np.float64)
    magnitude = np.abs(x64)
    # Both fits run over the whole array, clamped into their intervals so both stay finite, and a 0/1 mask
    # blends them exactly (v * 1 + w * 0 == v). That beats boolean-mask gathers and scatters, and np.where,
    # several times over. NaN propagates through both fits.
    xs = np.clip(x64, -_ERF_SPLIT, _ERF_SPLIT)
    near = xs * _horner(small, xs * xs)
    a = np.clip(magnitude, _ERF_SPLIT, _ERF_SATURATION)
    far = np.copysign(1 - np.exp(-a * a) * _horner(large, 1 / (1 + a / 2)), x64)
    inside = (magnitude < _ERF_SPLIT).astype(np.float64)
    out = near * inside + far * (1 - inside)
    return as_array(out.astype(dtype, copy=False))


# consumed_inputs (opset 1 only) was a buffer-reuse hint with no effect on the result.


@kernel("Neg", since=1)
def Neg(x: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return as_array(np.negative(x))


@kernel("Abs", since=1)
def Abs(x: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return as_array(np.abs(x))


@kernel("Sqrt", since=1)
def Sqrt(x: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return as_array(np.sqrt(x))


@kernel("Exp", since=1)
def Exp(x: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return as_array(np.exp(x))


@kernel("Log", since=1)
def Log(x: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return as_array(np.log(x))


@kernel("Reciprocal", since=1)
def Reciprocal(x: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return as_array(np.reciprocal(x))


@kernel("Floor", since=1)
def Floor(x: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return as_array(np.floor(x))


@kernel("Ceil", since=1)
def Ceil(x: np.ndarray, *, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return as_array(np.ceil(x))


@kernel("Round", since=11)
def Round(x: np.ndarray) -> np.ndarray:
    return as_array(np.rint(x))  # rint rounds halves to even, as the spec asks


@kernel("Sign", since=9)
def Sign(x: np.ndarray) -> np.ndarray:
    return as_array(np.sign(x))


@kernel("Sin", since=7)
def Sin(x: np.ndarray) -> np.ndarray:
    return as_array(np.sin(x))


@kernel("Cos", since=7)
def Cos(x: np.ndarray) -> np.ndarray:
    return as_array(np.cos(x))


@kernel("Tan", since=7)
def Tan(x: np.ndarray) -> np.ndarray:
    return as_array(np.tan(x))


@kernel("Asin", since=7)
def Asin(x: np.ndarray) -> np.ndarray:
    return as_array(np.arcsin(x))


@kernel("Acos", since=7)
def Acos(x: np.ndarray) -> np.ndarray:
    return as_array(np.arccos(x))


@kernel("Atan", since=7)
def Atan(x: np.ndarray) -> np.ndarray:
    return as_array(np.arctan(x))


@kernel("Sinh", since=9)
def Sinh(x: np.ndarray) -> np.ndarray:
    return as_array(np.sinh(x))


@kernel("Cosh", since=9)
def Cosh(x: np.ndarray) -> np.ndarray:
    return as_array(np.cosh(x))


@kernel("Asinh", since=9)
def Asinh(x: np.ndarray) -> np.ndarray:
    return as_array(np.arcsinh(x))


@kernel("Acosh", since=9)
def Acosh(x: np.ndarray) -> np.ndarray:
    return as_array(np.arccosh(x))


@kernel("Atanh", since=9)
def Atanh(x: np.ndarray) -> np.ndarray:
    return as_array(np.arctanh(x))


@kernel("Erf", since=9)
def Erf(x: np.ndarray) -> np.ndarray:
    return erf(x)
