"""Argument checks shared by the shape, indexing and creation kernels.

Shape-like inputs arrive as int64 tensors; these helpers turn them into Python ints (so arithmetic on
extreme values such as INT64_MAX slice ends cannot overflow), normalise axes, bounds-check indices and
refuse output shapes too large to allocate. Every failure is an ``InvalidArgument`` naming the problem.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from onnxforge._errors import InvalidArgument

# Largest tensor a kernel agrees to allocate (elements). 2**34 float32 is 64 GiB: anything above is a
# corrupt or adversarial shape, and failing early beats a MemoryError (or the OOM killer) mid-run.
MAX_ELEMENTS = 2**34


def checked_shape(shape: Iterable[int], what: str) -> tuple[int, ...]:
    """``shape`` as a tuple, after checking no dim is negative and the element count is allocatable."""
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise InvalidArgument(f"{what}: the requested shape {list(dims)} has a negative dimension")
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise InvalidArgument(
            f"{what}: the requested shape {list(dims)} has {count} elements, more than the limit of {MAX_ELEMENTS}"
        )
    return dims


def int_list(tensor: np.ndarray | Sequence[int], what: str) -> list[int]:
    """A 1-D (or scalar) integer tensor as a list of Python ints."""
    array = np.asarray(tensor)
    if array.size and array.dtype.kind not in "iu":
        raise InvalidArgument(f"{what} must be an integer tensor, got {array.dtype}")
    if array.ndim > 1:
        raise InvalidArgument(f"{what} must be a 1-D tensor, got shape {array.shape}")
    return [int(v) for v in array.reshape(-1).tolist()]


def scalar_int(tensor: np.ndarray | int, what: str) -> int:
    """A single-element integer tensor as a Python int."""
    array = np.asarray(tensor)
    if array.size != 1:
        raise InvalidArgument(f"{what} must hold exactly one value, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise InvalidArgument(f"{what} must be an integer, got {array.dtype}")
    return int(array.reshape(-1)[0])


def scalar_value(tensor: np.ndarray, what: str) -> np.generic:
    """The single element of a scalar (or one-element) tensor, keeping its dtype."""
    array = np.asarray(tensor)
    if array.size != 1:
        raise InvalidArgument(f"{what} must hold exactly one value, got shape {array.shape}")
    return array.reshape(-1)[0]


def axis_index(axis: int, rank: int, what: str = "axis") -> int:
    """``axis`` in [-rank, rank-1], normalised to [0, rank-1]."""
    if not -rank <= axis < rank:
        raise InvalidArgument(
            f"{what} {axis} is out of range for a tensor of rank {rank} (valid: [{-rank}, {rank - 1}])"
        )
    return axis + rank if axis < 0 else axis


def axis_list(axes: Iterable[int], rank: int, what: str = "axes") -> list[int]:
    """Normalised axes, refusing repeats (``[0, -rank]`` names one axis twice)."""
    result = [axis_index(int(a), rank, what) for a in axes]
    if len(set(result)) != len(result):
        raise InvalidArgument(f"{what} {list(axes)} name the same axis more than once (rank {rank})")
    return result


def wrapped_indices(indices: np.ndarray, size: int, what: str) -> np.ndarray:
    """Indices in [-size, size-1] as non-negative intp; anything outside raises instead of wrapping."""
    array = np.asarray(indices)
    if array.dtype.kind not in "iu":
        raise InvalidArgument(f"{what} must be int32 or int64, got {array.dtype}")
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < -size or high >= size:
            bad = low if low < -size else high
            raise InvalidArgument(
                f"{what}: index {bad} is out of bounds for a dimension of size {size} "
                f"(valid range [{-size}, {size - 1}])"
            )
    array = array.astype(np.intp, copy=False)
    return np.where(array < 0, array + size, array) if array.size and array.min() < 0 else array
