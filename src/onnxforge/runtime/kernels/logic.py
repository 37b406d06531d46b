"""Comparisons (Equal, Less, LessOrEqual, Greater, GreaterOrEqual), boolean logic (And, Or, Xor, Not) and Where.

Every result but Where's is a bool tensor. Binary ops broadcast NumPy-style from opset 7; opset 1 had the
``broadcast``/``axis`` attributes (see ``elementwise.legacy_broadcast``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnxforge.runtime.kernels.elementwise import as_array, legacy_broadcast
from onnxforge.runtime.registry import kernel


def _register_legacy(op: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
    """Register the opset-1 form of a binary op: ``fn`` after the attribute-driven broadcast."""

    def legacy(a: np.ndarray, b: np.ndarray, *, broadcast: int = 0, axis: int | None = None) -> np.ndarray:
        return fn(a, legacy_broadcast(a, b, broadcast, axis))

    legacy.__name__ = legacy.__qualname__ = f"{op}_1"
    kernel(op, since=1)(legacy)


@kernel("Equal", since=7)
def Equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # String tensors arrive as object arrays, whose == compares the Python strings element-wise.
    return as_array(np.equal(a, b))


@kernel("Less", since=7)
def Less(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.less(a, b))


@kernel("LessOrEqual", since=12)
def LessOrEqual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.less_equal(a, b))


@kernel("Greater", since=7)
def Greater(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.greater(a, b))


@kernel("GreaterOrEqual", since=12)
def GreaterOrEqual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.greater_equal(a, b))


@kernel("And", since=7)
def And(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.logical_and(a, b))


@kernel("Or", since=7)
def Or(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.logical_or(a, b))


@kernel("Xor", since=7)
def Xor(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return as_array(np.logical_xor(a, b))


@kernel("Not", since=1)
def Not(x: np.ndarray) -> np.ndarray:
    return as_array(np.logical_not(x))


@kernel("Where", since=9)
def Where(condition: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return as_array(np.where(condition, x, y))


for _op, _fn in (("Equal", Equal), ("Less", Less), ("Greater", Greater), ("And", And), ("Or", Or), ("Xor", Xor)):
    _register_legacy(_op, _fn)
