"""Ops without a family of their own: CumProd and TensorScatter.

CumProd (opset 26) along ``axis``, for ``x = [x_0, ..., x_{n-1}]``:

- inclusive: ``y_j = x_0 * ... * x_j``; exclusive: ``y_j = x_0 * ... * x_{j-1}`` (``y_0 = 1``);
- ``reverse=1`` runs from the end: ``y_j = x_j * ... * x_{n-1}`` (exclusive: from ``x_{j+1}``, ``y_{n-1} = 1``).

Integers wrap on overflow as in NumPy; float16 multiplies in float16 (as onnx's reference), bfloat16 in float32.

TensorScatter (opset 24) writes a KV-cache update into a copy of the cache. ``past_cache`` and ``update`` agree
except along the sequence ``axis`` (not 0, the batch axis), where the cache has ``max_sequence_length`` and the
update ``sequence_length <= max_sequence_length``. For batch ``b`` and ``s < sequence_length``:

    present[b, ..., (write_indices[b] + s) (mod max_sequence_length if mode == 'circular'), ...] = update[b, ..., s, ...]

``write_indices`` defaults to zeros; in linear mode ``0 <= write_indices[b]`` and
``write_indices[b] + sequence_length <= max_sequence_length`` must hold.
"""

from __future__ import annotations

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._args import axis_index, scalar_int
from onnxforge.runtime.registry import kernel


def _shift_one(values: np.ndarray, axis: int, fill: np.ndarray) -> np.ndarray:
    """``values`` moved one step along ``axis``: ``out[0] = fill``, ``out[i] = values[i - 1]``."""
    shifted = np.empty_like(values)
    lead = [slice(None)] * values.ndim
    tail = [slice(None)] * values.ndim
    first = [slice(None)] * values.ndim
    lead[axis], tail[axis], first[axis] = slice(1, None), slice(None, -1), slice(0, 1)
    shifted[tuple(lead)] = values[tuple(tail)]
    shifted[tuple(first)] = fill
    return shifted


@kernel("CumProd", since=26)
def CumProd(x: np.ndarray, axis: np.ndarray, *, exclusive: int = 0, reverse: int = 0) -> np.ndarray:
    if np.asarray(axis).ndim > 1:
        raise InvalidArgument(f"CumProd: axis must be a scalar, got shape {list(np.asarray(axis).shape)}")
    if x.ndim == 0:
        raise InvalidArgument("CumProd: the input must have rank >= 1")
    ax = axis_index(scalar_int(axis, "CumProd's axis"), x.ndim, "CumProd's axis")
    compute = x.dtype if x.dtype.kind in "iuf" else np.dtype(np.float32)  # bfloat16 has no accumulate loop
    data = x.astype(compute, copy=False)
    if reverse:
        data = np.flip(data, axis=ax)
    total = np.cumprod(data, axis=ax, dtype=compute)
    if exclusive and total.shape[ax]:
        total = _shift_one(total, ax, np.ones((), dtype=compute))
    if reverse:
        total = np.flip(total, axis=ax)
    return np.ascontiguousarray(total).astype(x.dtype, copy=False)


@kernel("TensorScatter", since=24)
def TensorScatter(
    past_cache: np.ndarray,
    update: np.ndarray,
    write_indices: np.ndarray | None = None,
    *,
    axis: int = -2,
    mode: str = "linear",
) -> np.ndarray:
    if mode not in ("linear", "circular"):
        raise InvalidArgument(f"TensorScatter: mode must be 'linear' or 'circular', got {mode!r}")
    rank = past_cache.ndim
    if rank < 2:
        raise InvalidArgument(f"TensorScatter: past_cache must have rank >= 2, got shape {list(past_cache.shape)}")
    ax = axis_index(axis, rank, "TensorScatter's axis")
    if ax == 0:
        raise InvalidArgument("TensorScatter: axis must not be 0 (the batch axis)")
    if update.dtype != past_cache.dtype:
        raise InvalidArgument(f"TensorScatter: update is {update.dtype} but past_cache is {past_cache.dtype}")
    cache_shape, update_shape = past_cache.shape, update.shape
    if (
        update.ndim != rank
        or any(c != u for i, (c, u) in enumerate(zip(cache_shape, update_shape)) if i != ax)
        or update_shape[ax] > cache_shape[ax]
    ):
        raise InvalidArgument(
            f"TensorScatter: update shape {list(update_shape)} must equal past_cache shape {list(cache_shape)} "
            f"except along axis {ax}, where it must not be longer"
        )
    batch, max_len, seq_len = cache_shape[0], cache_shape[ax], update_shape[ax]
    if write_indices is None:
        starts = np.zeros(batch, dtype=np.int64)
    else:
        starts = np.asarray(write_indices)
        if starts.dtype.kind not in "iu" or starts.shape != (batch,):
            raise InvalidArgument(
                f"TensorScatter: write_indices must be int64 of shape [{batch}], "
                f"got {starts.dtype} {list(starts.shape)}"
            )
        starts = starts.astype(np.int64)
    present = past_cache.copy()
    if seq_len == 0:
        return present
    offsets = np.arange(seq_len, dtype=np.int64)
    for b in range(batch):
        positions = starts[b] + offsets
        if mode == "circular":
            positions %= max_len
        elif starts[b] < 0 or starts[b] + seq_len > max_len:
            raise InvalidArgument(
                f"TensorScatter: linear mode writes positions {int(starts[b])}..{int(starts[b]) + seq_len - 1} "
                f"of batch {b}, outside the sequence axis of length {max_len}"
            )
        # views of batch b with the sequence axis first: fancy assignment writes through into ``present``
        np.moveaxis(present[b], ax - 1, 0)[positions] = np.moveaxis(update[b], ax - 1, 0)
    return present
