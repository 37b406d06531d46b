"""Element-wise arithmetic: binary (Add .. Mod, Pow), variadic (Max, Min, Sum, Mean), Clip, bit ops, IsNaN/IsInf.

Binary ops broadcast NumPy-style from opset 7. Before that they took ``broadcast``/``axis`` attributes: B was
broadcast onto A with its dims aligned at ``axis`` (or at the end); ``legacy_broadcast`` turns that into NumPy
broadcasting by padding B's shape with trailing ones. The shared helpers here are also used by the sibling
modules (math_unary, logic, activation, reduce).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.registry import kernel

Binary = Callable[[np.ndarray, np.ndarray], np.ndarray]


def as_array(value: Any) -> np.ndarray:
    """``value`` as an ndarray: ufuncs and reductions hand back numpy scalars for 0-d results."""
    return value if type(value) is np.ndarray else np.asarray(value)


def legacy_broadcast(a: np.ndarray, b: np.ndarray, broadcast: int, axis: int | None) -> np.ndarray:
    """B reshaped so NumPy broadcasting matches the opset < 7 ``broadcast``/``axis`` rule."""
    if not broadcast or axis is None or b.ndim == 0:
        return b  # no axis: B's dims align with A's trailing dims, which is NumPy's rule already
    start = axis + a.ndim if axis < 0 else axis
    trailing = a.ndim - start - b.ndim
    if start < 0 or trailing < 0:
        raise InvalidArgument(f"cannot broadcast B of shape {b.shape} onto A of shape {a.shape} at axis {axis}")
    return b.reshape(b.shape + (1,) * trailing)


def _register_legacy(op: str, fn: Binary, since: int = 1) -> None:
    """Register the opset-1..6 form of a binary op: ``fn`` after the attribute-driven broadcast."""

    def legacy(
        a: np.ndarray,
        b: np.ndarray,
        *,
        broadcast: int = 0,
        axis: int | None = None,
        consumed_inputs: list[int] | None = None,
    ) -> np.ndarray:
        return fn(a, legacy_broadcast(a, b, broadcast, axis))

    legacy.__name__ = legacy.__qualname__ = f"{op}_{since}"
    kernel(op, since=since)(legacy)


@kernel("Add", since=7)
def Add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.add(a, b))


@kernel("Sub", since=7)
def Sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.subtract(a, b))


@kernel("Mul", since=7)
def Mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.multiply(a, b))


@kernel("Div", since=7)
def Div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind not in "iu":
        return as_array(np.divide(a, b))
    quotient, remainder = np.divmod(a, b)
    if a.dtype.kind == "u":
        return as_array(quotient)
    # Integers divide like C: truncate toward zero, where floor division rounds toward -inf.
    return as_array(quotient + ((remainder != 0) & ((a < 0) != (b < 0))))


def _power(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "iu" and y.dtype.kind in "iu" and not (y.dtype.kind == "i" and (y < 0).any()):
        # Integer powers stay in the base's type (wrapping on overflow like C++).
        return as_array(np.power(x, y.astype(x.dtype, copy=False)))
    if x.dtype.kind in "iu":
        # Negative or fractional exponents of an integer base go through float64, then truncate.
        return as_array(np.power(x.astype(np.float64), y).astype(x.dtype))
    return as_array(np.power(x, y).astype(x.dtype, copy=False))


def _prepare_pow(constants: list[np.ndarray | None], **_: Any) -> Callable[..., np.ndarray] | None:
    """A constant 0-d exponent of 2 becomes a multiply (LayerNorm decompositions square this way)."""
    exponent = constants[1] if len(constants) > 1 else None
    if exponent is None or exponent.size != 1 or exponent.ndim > 0 or exponent.dtype.kind not in "iuf":
        return None  # a non-0-d exponent could still broadcast X to a bigger shape
    if float(exponent) != 2.0:
        return None

    def square(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        # x * x rounds once in x's type, as pow(x, 2) computed wider and cast back does.
        return as_array(np.multiply(x, x)) if x.dtype.kind in "fiu" else _power(x, y)

    return square


@kernel("Pow", since=7, prepare=_prepare_pow)
def Pow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _power(x, y)


@kernel("Mod", since=10)
def Mod(a: np.ndarray, b: np.ndarray, *, fmod: int = 0) -> np.ndarray:
    # fmod=0 is Python's % (sign of the divisor), fmod=1 is C's fmod (sign of the dividend).
    return as_array(np.fmod(a, b) if fmod else np.mod(a, b))


_register_legacy("Add", Add)
_register_legacy("Sub", Sub)
_register_legacy("Mul", Mul)
_register_legacy("Div", Div)
_register_legacy("Pow", _power)


# Variadic ops. Opset 6 required equal shapes and 8 added broadcasting; broadcasting covers both.


@kernel("Max", since=1)
def Max(*data: np.ndarray, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return as_array(functools.reduce(np.maximum, data))


@kernel("Min", since=1)
def Min(*data: np.ndarray, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return as_array(functools.reduce(np.minimum, data))


@kernel("Sum", since=1)
def Sum(*data: np.ndarray, consumed_inputs: list[int] | None = None) -> np.ndarray:
    return as_array(functools.reduce(np.add, data))


@kernel("Mean", since=1)
def Mean(*data: np.ndarray, consumed_inputs: list[int] | None = None) -> np.ndarray:
    total = functools.reduce(np.add, data)
    return as_array((total / len(data)).astype(data[0].dtype, copy=False))


def _clip(x: np.ndarray, low: Any, high: Any) -> np.ndarray:
    # maximum then minimum: when min > max every element becomes max, as the spec requires.
    if low is not None:
        x = np.maximum(x, low)
    if high is not None:
        x = np.minimum(x, high)
    return as_array(x)


@kernel("Clip", since=1)
def Clip_1(
    input: np.ndarray,
    *,
    min: float | None = None,  # noqa: A002 - the spec's attribute names
    max: float | None = None,  # noqa: A002
    consumed_inputs: list[int] | None = None,
) -> np.ndarray:
    # Unset bounds default to -/+FLT_MAX in the spec, which cannot clip a float tensor: skip them.
    low = None if min is None else np.asarray(min).astype(input.dtype)
    high = None if max is None else np.asarray(max).astype(input.dtype)
    return _clip(input, low, high)


@kernel("Clip", since=11)
def Clip(input: np.ndarray, min: np.ndarray | None = None, max: np.ndarray | None = None) -> np.ndarray:  # noqa: A002
    for name, bound in (("min", min), ("max", max)):
        if bound is not None and bound.size != 1:
            raise InvalidArgument(f"Clip: {name} must be a scalar, got shape {bound.shape}")
    low = None if min is None else min.reshape(())
    high = None if max is None else max.reshape(())
    return _clip(input, low, high)


@kernel("BitShift", since=11)
def BitShift(x: np.ndarray, y: np.ndarray, *, direction: str = "") -> np.ndarray:
    # numpy already gives what opset 28 specifies for shifts >= the bit width or negative shifts (0, or -1
    # for a right shift of a negative value), so the same function serves every version.
    if direction == "LEFT":
        return as_array(np.left_shift(x, y))
    if direction == "RIGHT":
        return as_array(np.right_shift(x, y))
    raise InvalidArgument(f"BitShift: direction must be 'LEFT' or 'RIGHT', got {direction!r}")


@kernel("BitwiseAnd", since=18)
def BitwiseAnd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.bitwise_and(a, b))


@kernel("BitwiseOr", since=18)
def BitwiseOr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.bitwise_or(a, b))


@kernel("BitwiseXor", since=18)
def BitwiseXor(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.bitwise_xor(a, b))


@kernel("BitwiseNot", since=18)
def BitwiseNot(x: np.ndarray) -> np.ndarray:
    return as_array(np.invert(x))


@kernel("IsNaN", since=9)
def IsNaN(x: np.ndarray) -> np.ndarray:
    return as_array(np.isnan(x))


@kernel("IsInf", since=10)
def IsInf(x: np.ndarray, *, detect_negative: int = 1, detect_positive: int = 1) -> np.ndarray:
    if detect_negative and detect_positive:
        return as_array(np.isinf(x))
    if detect_positive:
        return as_array(np.isinf(x) & (x > 0))
    if detect_negative:
        return as_array(np.isinf(x) & (x < 0))
    return np.zeros(x.shape, dtype=np.bool_)
