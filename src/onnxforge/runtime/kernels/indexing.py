"""Index-driven reads and writes: Gather, GatherElements, GatherND, ScatterND, ScatterElements, Scatter,
NonZero, Compress.

Indices may be negative (counting from the back of their axis); anything outside [-dim, dim-1] raises
``InvalidArgument`` naming the index, never wraps twice or reads out of bounds. Scatter kernels copy
``data`` first: inputs are never written.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._args import axis_index, wrapped_indices
from onnxforge.runtime.registry import kernel


@kernel("Gather", since=1)
def Gather(data: np.ndarray, indices: np.ndarray, *, axis: int = 0) -> np.ndarray:
    axis = axis_index(axis, data.ndim, "Gather's axis")
    positions = wrapped_indices(indices, data.shape[axis], f"Gather's indices (axis {axis})")
    # np.take on 0-d indices and 1-D data returns a NumPy scalar
    return np.asarray(np.take(data, positions, axis=axis))


def _check_elementwise_indices(data: np.ndarray, indices: np.ndarray, axis: int, op: str) -> None:
    if indices.ndim != data.ndim:
        raise InvalidArgument(f"{op}: indices have rank {indices.ndim} but data has rank {data.ndim}")
    too_big = [d for d in range(data.ndim) if d != axis and indices.shape[d] > data.shape[d]]
    if too_big:
        raise InvalidArgument(
            f"{op}: indices of shape {list(indices.shape)} exceed data of shape {list(data.shape)} on axes {too_big}"
        )


@kernel("GatherElements", since=11)
def GatherElements(data: np.ndarray, indices: np.ndarray, *, axis: int = 0) -> np.ndarray:
    axis = axis_index(axis, data.ndim, "GatherElements' axis")
    _check_elementwise_indices(data, indices, axis, "GatherElements")
    positions = wrapped_indices(indices, data.shape[axis], f"GatherElements' indices (axis {axis})")
    window = tuple(slice(None) if d == axis else slice(0, indices.shape[d]) for d in range(data.ndim))
    return np.take_along_axis(data[window], positions, axis=axis)


@kernel("GatherND", since=11)
@kernel("GatherND", since=12)
def GatherND(data: np.ndarray, indices: np.ndarray, *, batch_dims: int = 0) -> np.ndarray:
    rank, batch = data.ndim, batch_dims
    if indices.ndim < 1 or not 0 <= batch < min(rank, indices.ndim):
        raise InvalidArgument(
            f"GatherND: batch_dims {batch} must be in [0, min(rank(data), rank(indices))) for data of rank {rank} "
            f"and indices of rank {indices.ndim}"
        )
    depth = indices.shape[-1]
    if not 1 <= depth <= rank - batch:
        raise InvalidArgument(f"GatherND: the last dimension of indices ({depth}) must be in [1, {rank - batch}]")
    if data.shape[:batch] != indices.shape[:batch]:
        raise InvalidArgument(
            f"GatherND: the batch dimensions of data {list(data.shape[:batch])} and indices "
            f"{list(indices.shape[:batch])} differ"
        )
    batches = math.prod(data.shape[:batch])
    flat_data = data.reshape((batches, *data.shape[batch:]))
    flat_indices = indices.reshape(batches, math.prod(indices.shape[batch:-1]), depth)
    columns = tuple(
        wrapped_indices(flat_indices[..., j], data.shape[batch + j], f"GatherND's indices (axis {batch + j})")
        for j in range(depth)
    )
    gathered = flat_data[(np.arange(batches)[:, None], *columns)]
    return gathered.reshape(indices.shape[:-1] + data.shape[batch + depth :])


_REDUCTIONS: dict[str, Callable[..., None]] = {
    "add": np.add.at,
    "mul": np.multiply.at,
    "max": np.maximum.at,
    "min": np.minimum.at,
}


def _write(out: np.ndarray, where: tuple[np.ndarray, ...], updates: np.ndarray, reduction: str, op: str) -> np.ndarray:
    if reduction == "none":
        out[where] = updates
    elif reduction in _REDUCTIONS:
        _REDUCTIONS[reduction](out, where, updates)
    else:
        raise InvalidArgument(f"{op}: reduction must be one of none, add, mul, max, min; got {reduction!r}")
    return out


@kernel("ScatterND", since=11)
@kernel("ScatterND", since=16)
@kernel("ScatterND", since=18)
def ScatterND(data: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, reduction: str = "none") -> np.ndarray:
    if indices.ndim < 1:
        raise InvalidArgument("ScatterND: indices must have rank >= 1")
    depth = indices.shape[-1]
    if not 1 <= depth <= data.ndim:
        raise InvalidArgument(f"ScatterND: the last dimension of indices ({depth}) must be in [1, {data.ndim}]")
    expected = indices.shape[:-1] + data.shape[depth:]
    if updates.shape != expected:
        raise InvalidArgument(
            f"ScatterND: updates have shape {list(updates.shape)}, expected {list(expected)} "
            f"(indices.shape[:-1] + data.shape[{depth}:])"
        )
    where = tuple(
        wrapped_indices(indices[..., j], data.shape[j], f"ScatterND's indices (axis {j})") for j in range(depth)
    )
    return _write(data.copy(), where, updates.astype(data.dtype, copy=False), reduction, "ScatterND")


def _scatter_elements(
    data: np.ndarray, indices: np.ndarray, updates: np.ndarray, axis: int, reduction: str, op: str
) -> np.ndarray:
    axis = axis_index(axis, data.ndim, f"{op}'s axis")
    if updates.shape != indices.shape:
        raise InvalidArgument(f"{op}: updates have shape {list(updates.shape)} but indices {list(indices.shape)}")
    _check_elementwise_indices(data, indices, axis, op)
    where = list(np.indices(indices.shape, sparse=True))
    where[axis] = wrapped_indices(indices, data.shape[axis], f"{op}'s indices (axis {axis})")
    return _write(data.copy(), tuple(where), updates.astype(data.dtype, copy=False), reduction, op)


@kernel("ScatterElements", since=11)
@kernel("ScatterElements", since=16)
@kernel("ScatterElements", since=18)
def ScatterElements(
    data: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, axis: int = 0, reduction: str = "none"
) -> np.ndarray:
    return _scatter_elements(data, indices, updates, axis, reduction, "ScatterElements")


@kernel("Scatter", since=9)
def Scatter(data: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, axis: int = 0) -> np.ndarray:
    return _scatter_elements(data, indices, updates, axis, "none", "Scatter")


@kernel("NonZero", since=9)
def NonZero(X: np.ndarray) -> np.ndarray:
    # A scalar counts as a 1-element vector (onnxruntime's and NumPy 1.x's convention).
    x = X.reshape(1) if X.ndim == 0 else X
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


@kernel("Compress", since=9)
def Compress(input: np.ndarray, condition: np.ndarray, *, axis: int | None = None) -> np.ndarray:
    if condition.ndim != 1:
        raise InvalidArgument(f"Compress: condition must be 1-D, got shape {list(condition.shape)}")
    if axis is None:
        flat = input.reshape(-1)
        return flat[condition.astype(bool)[: flat.size].nonzero()[0]]
    axis = axis_index(axis, input.ndim, "Compress' axis")
    # entries past the end of the axis select nothing (onnxruntime ignores them too)
    keep = condition.astype(bool)[: input.shape[axis]].nonzero()[0]
    return np.take(input, keep, axis=axis)
