"""Order-dependent ops along an axis: TopK, Unique, CumSum, ReverseSequence.

TopK is stable: among equal values the lower index comes first, for largest and smallest alike. Unique
sorts like ``np.unique`` (lexicographically for sub-tensors along an axis) or, with sorted=0, keeps the
order of first occurrence.
"""

from __future__ import annotations

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._args import axis_index, int_list, scalar_int
from onnxforge.runtime.registry import kernel


def _topk(X: np.ndarray, k: int, axis: int, largest: int) -> tuple[np.ndarray, np.ndarray]:
    axis = axis_index(axis, X.ndim, "TopK's axis")
    dim = X.shape[axis]
    if not 0 <= k <= dim:
        raise InvalidArgument(f"TopK: k = {k} must be in [0, {dim}] (the size of axis {axis})")
    if largest:
        # Descending with ties broken by the lower index: a stable ascending sort of the reversed axis,
        # read backwards, puts equal values in ascending original order.
        flipped = np.flip(X, axis=axis)
        order = np.flip(np.argsort(flipped, axis=axis, kind="stable"), axis=axis)
        order = dim - 1 - order
    else:
        order = np.argsort(X, axis=axis, kind="stable")
    order = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(X, order, axis=axis), order.astype(np.int64)


@kernel("TopK", since=1)
def TopK_1(X: np.ndarray, *, axis: int = -1, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    if k is None:
        raise InvalidArgument("TopK-1 needs the 'k' attribute")
    return _topk(X, k, axis, 1)


@kernel("TopK", since=10)
@kernel("TopK", since=11)
def TopK(
    X: np.ndarray, K: np.ndarray, *, axis: int = -1, largest: int = 1, sorted: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    # sorted=0 leaves the order unspecified, so the sorted order is a valid answer for both.
    return _topk(X, scalar_int(K, "TopK's K"), axis, largest)


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(rows, axis=0) with all extras, also for object (string) rows NumPy cannot sort by axis."""
    if rows.dtype != object:
        return np.unique(rows, axis=0, return_index=True, return_inverse=True, return_counts=True)
    keys = [tuple(row) for row in rows.tolist()]
    distinct = sorted(set(keys))
    position = {key: i for i, key in enumerate(distinct)}
    inverse = np.array([position[key] for key in keys], dtype=np.int64)
    first = np.full(len(distinct), len(keys), dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(len(keys)))
    counts = np.bincount(inverse, minlength=len(distinct))
    return rows[first], first, inverse, counts


@kernel("Unique", since=11)
def Unique(
    X: np.ndarray, *, axis: int | None = None, sorted: int = 1, _num_outputs: int = 1
) -> np.ndarray | tuple[np.ndarray, ...]:
    if axis is None:
        values, first, inverse, counts = np.unique(
            X.reshape(-1), return_index=True, return_inverse=True, return_counts=True
        )
        shape_rest: tuple[int, ...] = ()
    else:
        axis = axis_index(axis, X.ndim, "Unique's axis")
        moved = np.moveaxis(X, axis, 0)
        shape_rest = moved.shape[1:]
        rows, first, inverse, counts = _unique_rows(moved.reshape(moved.shape[0], -1))
        values = rows.reshape((rows.shape[0], *shape_rest))
    inverse = np.asarray(inverse).reshape(-1)
    if not sorted:
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        values, first, counts, inverse = values[order], first[order], counts[order], rank[inverse]
    if axis is not None:
        values = np.moveaxis(values, 0, axis)
    outputs = (values, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64))
    return outputs[0] if _num_outputs <= 1 else outputs[:_num_outputs]


@kernel("CumSum", since=11)
def CumSum(x: np.ndarray, axis: np.ndarray, *, exclusive: int = 0, reverse: int = 0) -> np.ndarray:
    if np.asarray(axis).ndim > 1:
        raise InvalidArgument(f"CumSum: axis must be a scalar, got shape {list(np.asarray(axis).shape)}")
    ax = axis_index(scalar_int(axis, "CumSum's axis"), x.ndim, "CumSum's axis")
    data = np.flip(x, axis=ax) if reverse else x
    total = np.cumsum(data, axis=ax, dtype=x.dtype)
    if exclusive:
        # shift by one along the axis: out[0] = 0, out[i] = sum(x[:i])
        shifted = np.zeros_like(total)
        lead = [slice(None)] * x.ndim
        tail = [slice(None)] * x.ndim
        lead[ax], tail[ax] = slice(1, None), slice(None, -1)
        shifted[tuple(lead)] = total[tuple(tail)]
        total = shifted
    return np.flip(total, axis=ax) if reverse else total


@kernel("ReverseSequence", since=10)
def ReverseSequence(
    input: np.ndarray, sequence_lens: np.ndarray, *, batch_axis: int = 1, time_axis: int = 0
) -> np.ndarray:
    if input.ndim < 2:
        raise InvalidArgument(f"ReverseSequence: the input must have rank >= 2, got shape {list(input.shape)}")
    if {batch_axis, time_axis} != {0, 1}:
        raise InvalidArgument(f"ReverseSequence: batch_axis {batch_axis} and time_axis {time_axis} must be 0 and 1")
    batches, steps = input.shape[batch_axis], input.shape[time_axis]
    lengths = int_list(sequence_lens, "ReverseSequence's sequence_lens")
    if len(lengths) != batches:
        raise InvalidArgument(f"ReverseSequence: sequence_lens has {len(lengths)} values for a batch of {batches}")
    bad = [n for n in lengths if not 0 <= n <= steps]
    if bad:
        raise InvalidArgument(f"ReverseSequence: sequence lengths {bad} are outside [0, {steps}]")
    lens = np.array(lengths, dtype=np.intp)
    t = np.arange(steps)[:, None]
    # source time index per (time, batch): reversed inside the sequence, unchanged after it
    source = np.where(t < lens[None, :], lens[None, :] - 1 - t, t)
    if time_axis == 1:
        source = source.T
    source = source.reshape(source.shape + (1,) * (input.ndim - 2))
    return np.take_along_axis(input, source, axis=time_axis)
