"""Cutting and joining along axes: Concat, Split, Slice, Pad.

Slice follows the spec's clamping exactly: starts/ends count from the back when negative, then clamp to
[0, dim] (step > 0) or to [0, dim-1] / [-1, dim-1] (step < 0), where an end of -1 means "before the
first element". Values arrive as Python ints so INT64_MAX/INT64_MIN sentinels cannot overflow.

Pad's negative pads crop; cropping happens before padding (as onnxruntime does), so reflect/edge/wrap
padding mirrors the cropped tensor.
"""

from __future__ import annotations

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._args import axis_index, axis_list, checked_shape, int_list, scalar_value
from onnxforge.runtime.registry import kernel


def _concat(inputs: tuple[np.ndarray, ...], axis: int) -> np.ndarray:
    if not inputs:
        raise InvalidArgument("Concat needs at least one input")
    rank = inputs[0].ndim
    if rank == 0:
        raise InvalidArgument("Concat: inputs must have rank >= 1, got a scalar")
    axis = axis_index(axis, rank, "Concat's axis")
    first = inputs[0].shape
    for index, x in enumerate(inputs[1:], 1):
        if x.ndim != rank or any(a != b for i, (a, b) in enumerate(zip(x.shape, first)) if i != axis):
            raise InvalidArgument(
                f"Concat: input {index} has shape {list(x.shape)}, which does not match input 0's "
                f"{list(first)} outside axis {axis}"
            )
    if len({x.dtype for x in inputs}) > 1:
        raise InvalidArgument(f"Concat: inputs have different element types {sorted({str(x.dtype) for x in inputs})}")
    return np.concatenate(inputs, axis=axis)


@kernel("Concat", since=1)
def Concat_1(*inputs: np.ndarray, axis: int = 1) -> np.ndarray:
    return _concat(inputs, axis)


@kernel("Concat", since=4)
def Concat(*inputs: np.ndarray, axis: int | None = None) -> np.ndarray:
    if axis is None:
        raise InvalidArgument("Concat needs the 'axis' attribute")
    return _concat(inputs, axis)


def _split(
    input: np.ndarray, axis: int, split: list[int] | None, outputs: int, uneven: bool
) -> np.ndarray | tuple[np.ndarray, ...]:
    axis = axis_index(axis, input.ndim, "Split's axis")
    dim = input.shape[axis]
    if split is None:
        if outputs < 1:
            raise InvalidArgument(f"Split: cannot split into {outputs} outputs")
        if dim % outputs == 0:
            split = [dim // outputs] * outputs
        elif uneven:
            chunk = -(-dim // outputs)
            split = [chunk] * (outputs - 1) + [dim - chunk * (outputs - 1)]
            if split[-1] < 0:
                raise InvalidArgument(f"Split: a dimension of {dim} cannot be split into {outputs} chunks of {chunk}")
        else:
            raise InvalidArgument(f"Split: a dimension of {dim} cannot be split evenly into {outputs} outputs")
    if any(s < 0 for s in split) or sum(split) != dim:
        raise InvalidArgument(
            f"Split: split {split} must be non-negative and sum to the dimension {dim} of axis {axis}"
        )
    if len(split) != outputs:
        raise InvalidArgument(f"Split: split {split} has {len(split)} entries but the node has {outputs} outputs")
    index: list[slice] = [slice(None)] * input.ndim
    pieces = []
    position = 0
    for size in split:
        index[axis] = slice(position, position + size)
        pieces.append(input[tuple(index)])
        position += size
    return pieces[0] if len(pieces) == 1 else tuple(pieces)


@kernel("Split", since=2)
def Split_2(
    input: np.ndarray, *, axis: int = 0, split: list[int] | None = None, _num_outputs: int = 1
) -> np.ndarray | tuple[np.ndarray, ...]:
    return _split(input, axis, None if split is None else [int(s) for s in split], _num_outputs, uneven=False)


@kernel("Split", since=13)
def Split_13(
    input: np.ndarray, split: np.ndarray | None = None, *, axis: int = 0, _num_outputs: int = 1
) -> np.ndarray | tuple[np.ndarray, ...]:
    sizes = None if split is None else int_list(split, "Split's split")
    return _split(input, axis, sizes, _num_outputs, uneven=False)


@kernel("Split", since=18)
def Split(
    input: np.ndarray,
    split: np.ndarray | None = None,
    *,
    axis: int = 0,
    num_outputs: int | None = None,
    _num_outputs: int = 1,
) -> np.ndarray | tuple[np.ndarray, ...]:
    if split is not None and num_outputs is not None:
        raise InvalidArgument("Split: give either the 'split' input or the 'num_outputs' attribute, not both")
    if num_outputs is not None and num_outputs != _num_outputs:
        raise InvalidArgument(f"Split: num_outputs is {num_outputs} but the node declares {_num_outputs} outputs")
    sizes = None if split is None else int_list(split, "Split's split")
    return _split(input, axis, sizes, _num_outputs, uneven=True)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _slice(
    data: np.ndarray, starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None
) -> np.ndarray:
    count = len(starts)
    axes = list(range(count)) if axes is None else axes
    steps = [1] * count if steps is None else steps
    if not len(ends) == len(axes) == len(steps) == count:
        raise InvalidArgument(
            f"Slice: starts, ends, axes and steps must have the same length, got {count}, {len(ends)}, "
            f"{len(axes)} and {len(steps)}"
        )
    index: list[slice] = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axis_list(axes, data.ndim, "Slice's axes"), steps):
        if step == 0:
            raise InvalidArgument(f"Slice: steps must not be 0 (axis {axis})")
        dim = data.shape[axis]
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if step > 0:
            index[axis] = slice(_clamp(start, 0, dim), _clamp(end, 0, dim), step)
        else:
            end = _clamp(end, -1, dim - 1)
            index[axis] = slice(_clamp(start, 0, dim - 1), None if end < 0 else end, step)
    return data[tuple(index)]


@kernel("Slice", since=1)
def Slice_1(
    data: np.ndarray, *, starts: list[int] | None = None, ends: list[int] | None = None, axes: list[int] | None = None
) -> np.ndarray:
    if starts is None or ends is None:
        raise InvalidArgument("Slice-1 needs the 'starts' and 'ends' attributes")
    return _slice(data, [int(s) for s in starts], [int(e) for e in ends], axes, None)


@kernel("Slice", since=10)
def Slice(
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    axes: np.ndarray | None = None,
    steps: np.ndarray | None = None,
) -> np.ndarray:
    return _slice(
        data,
        int_list(starts, "Slice's starts"),
        int_list(ends, "Slice's ends"),
        None if axes is None else int_list(axes, "Slice's axes"),
        None if steps is None else int_list(steps, "Slice's steps"),
    )


_PAD_MODES = {"constant", "reflect", "edge", "wrap"}


def _pad(data: np.ndarray, pads: list[int], mode: str, value: object, axes: list[int] | None) -> np.ndarray:
    if mode not in _PAD_MODES:
        raise InvalidArgument(f"Pad: mode must be one of {sorted(_PAD_MODES)}, got {mode!r}")
    rank = data.ndim
    axes = list(range(rank)) if axes is None else axis_list(axes, rank, "Pad's axes")
    if len(pads) != 2 * len(axes):
        raise InvalidArgument(f"Pad: pads has {len(pads)} values, expected 2 * {len(axes)} (begins then ends)")
    crop: list[slice] = [slice(None)] * rank
    widths = [(0, 0)] * rank
    for i, axis in enumerate(axes):
        begin, end = pads[i], pads[len(axes) + i]
        dim = data.shape[axis]
        if -min(begin, 0) - min(end, 0) > dim:
            raise InvalidArgument(f"Pad: pads ({begin}, {end}) crop more than the {dim} elements of axis {axis}")
        crop[axis] = slice(-min(begin, 0), dim + min(end, 0))
        widths[axis] = (max(begin, 0), max(end, 0))
    data = data[tuple(crop)]
    checked_shape([d + b + e for d, (b, e) in zip(data.shape, widths)], "Pad")
    if mode == "constant":
        if value is None:
            value = "" if data.dtype == object else 0
        fill = np.asarray(value).astype(data.dtype)
        return np.pad(data, widths, mode="constant", constant_values=fill)
    empty = [axis for axis in range(rank) if widths[axis] != (0, 0) and data.shape[axis] == 0]
    if empty:
        raise InvalidArgument(f"Pad: mode {mode!r} cannot pad axes {empty}, which are empty after cropping")
    return np.pad(data, widths, mode=mode)


@kernel("Pad", since=2)
def Pad_2(data: np.ndarray, *, pads: list[int] | None = None, mode: str = "constant", value: float = 0.0) -> np.ndarray:
    if pads is None:
        raise InvalidArgument("Pad-2 needs the 'pads' attribute")
    return _pad(data, [int(p) for p in pads], mode, value, None)


@kernel("Pad", since=11)
@kernel("Pad", since=18)
def Pad(
    data: np.ndarray,
    pads: np.ndarray,
    constant_value: np.ndarray | None = None,
    axes: np.ndarray | None = None,
    *,
    mode: str = "constant",
) -> np.ndarray:
    value = (
        None
        if constant_value is None or constant_value.size == 0
        else scalar_value(constant_value, "Pad's constant_value")
    )
    return _pad(data, int_list(pads, "Pad's pads"), mode, value, None if axes is None else int_list(axes, "Pad's axes"))
