"""Tensor creation and plumbing: Constant, Identity, Cast, CastLike."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxforge.runtime.registry import kernel


@kernel("Identity", since=1)
def Identity(input: Any) -> Any:
    return input


@kernel("Constant", since=1)
def Constant(
    *,
    value: np.ndarray | None = None,
    value_float: float | None = None,
    value_floats: list[float] | None = None,
    value_int: int | None = None,
    value_ints: list[int] | None = None,
    value_string: str | None = None,
    value_strings: list[str] | None = None,
    sparse_value: Any = None,
) -> np.ndarray:
    if value is not None:
        return value
    if value_float is not None:
        return np.array(value_float, dtype=np.float32)
    if value_floats is not None:
        return np.array(value_floats, dtype=np.float32)
    if value_int is not None:
        return np.array(value_int, dtype=np.int64)
    if value_ints is not None:
        return np.array(value_ints, dtype=np.int64)
    if value_string is not None:
        return np.array(value_string, dtype=object)
    if value_strings is not None:
        return np.array(value_strings, dtype=object)
    raise ValueError("Constant has none of its value attributes")
