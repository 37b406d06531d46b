"""Sequences and optionals.

A sequence value is a Python list of np.ndarray and an empty optional is None; an optional that holds a
value is just that value. Kernels never mutate an input list (Loop may carry one across iterations, and a
value can feed several nodes), so every op that changes a sequence returns a new list.

- ``SequenceInsert(S, T, p)`` = S[:p] + [T] + S[p:] (p defaults to len(S), p in [-n, n]);
  ``SequenceErase(S, p)`` = S[:p] + S[p+1:] (p defaults to -1, p in [-n, n-1]); ``SequenceAt(S, p)`` = S[p].
- ``SplitToSequence(X, split)``: chunks along axis; a scalar split gives chunks of that size (the last may
  be shorter), a 1-D split gives those lengths, no split gives size-1 chunks (axis dropped if keepdims=0).
- ``ConcatFromSequence(S)`` = concat(S, axis), or stack(S, axis) when new_axis=1.
- ``SequenceMap(S, extra...)`` = [body(S[i], e_i...) for i], where e_i is extra[i] for a sequence and
  the extra input itself for a tensor; one output sequence per body output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.plan import Plan
from onnxforge.runtime.registry import kernel


def _sequence(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidArgument(f"{what}: expected a sequence, got {type(value).__name__}")
    return value


def _position(position: np.ndarray | None, length: int, default: int, allow_end: bool) -> int:
    """A position in [-n, n-1] (or [-n, n] when inserting), normalised to a non-negative index."""
    if position is None:
        return default
    array = np.asarray(position)
    if array.size != 1 or array.dtype.kind not in "iu":
        raise InvalidArgument(f"position must be an int32/int64 scalar, got {array.dtype} of shape {array.shape}")
    index = int(array.reshape(-1)[0])
    upper = length if allow_end else length - 1
    if not -length <= index <= upper:
        raise InvalidArgument(f"position {index} is out of range [{-length}, {upper}] for a sequence of {length}")
    return index + length if index < 0 else index


@kernel("SequenceEmpty", since=11)
def SequenceEmpty(*, dtype: int = 1) -> list[np.ndarray]:
    return []


@kernel("SequenceConstruct", since=11)
def SequenceConstruct(*inputs: np.ndarray) -> list[np.ndarray]:
    if len({x.dtype for x in inputs}) > 1:
        raise InvalidArgument(f"SequenceConstruct needs one element type, got {sorted({str(x.dtype) for x in inputs})}")
    return list(inputs)


@kernel("SequenceAt", since=11)
def SequenceAt(input_sequence: list[np.ndarray], position: np.ndarray) -> np.ndarray:
    sequence = _sequence(input_sequence, "input_sequence")
    return sequence[_position(position, len(sequence), 0, allow_end=False)]


@kernel("SequenceInsert", since=11)
def SequenceInsert(
    input_sequence: list[np.ndarray], tensor: np.ndarray, position: np.ndarray | None = None
) -> list[np.ndarray]:
    sequence = _sequence(input_sequence, "input_sequence")
    if sequence and sequence[0].dtype != tensor.dtype:
        raise InvalidArgument(f"SequenceInsert: tensor is {tensor.dtype} but the sequence holds {sequence[0].dtype}")
    index = _position(position, len(sequence), len(sequence), allow_end=True)
    return [*sequence[:index], tensor, *sequence[index:]]


@kernel("SequenceErase", since=11)
def SequenceErase(input_sequence: list[np.ndarray], position: np.ndarray | None = None) -> list[np.ndarray]:
    sequence = _sequence(input_sequence, "input_sequence")
    if not sequence:
        raise InvalidArgument("SequenceErase: the sequence is empty")
    index = _position(position, len(sequence), len(sequence) - 1, allow_end=False)
    return [*sequence[:index], *sequence[index + 1 :]]


@kernel("SequenceLength", since=11)
def SequenceLength(input_sequence: list[np.ndarray]) -> np.ndarray:
    return np.array(len(_sequence(input_sequence, "input_sequence")), dtype=np.int64)


@kernel("SplitToSequence", since=11)
@kernel("SplitToSequence", since=24)
def SplitToSequence(
    input: np.ndarray, split: np.ndarray | None = None, *, axis: int = 0, keepdims: int = 1
) -> list[np.ndarray]:
    if not -input.ndim <= axis < input.ndim:
        raise InvalidArgument(f"axis {axis} is out of range for rank {input.ndim}")
    axis %= input.ndim
    dim = input.shape[axis]
    if split is None:
        parts = np.split(input, dim, axis=axis) if dim else []
        # squeeze, not indexing: indexing a 1-D array would give a numpy scalar instead of a 0-d array.
        return parts if keepdims else [np.squeeze(part, axis=axis) for part in parts]
    split = np.asarray(split)
    if split.ndim == 0:
        size = int(split)
        if size <= 0:
            raise InvalidArgument(f"split must be positive, got {size}")
        lengths = [size] * (dim // size) + ([dim % size] if dim % size else [])
    elif split.ndim == 1:
        lengths = [int(n) for n in split]
        if any(n < 0 for n in lengths) or sum(lengths) != dim:
            raise InvalidArgument(f"split {lengths} must be non-negative and sum to dimension {dim} of axis {axis}")
    else:
        raise InvalidArgument(f"split must be a scalar or 1-D, got shape {split.shape}")
    return np.split(input, np.cumsum(lengths)[:-1], axis=axis) if lengths else []


@kernel("ConcatFromSequence", since=11)
def ConcatFromSequence(input_sequence: list[np.ndarray], *, axis: int, new_axis: int = 0) -> np.ndarray:
    sequence = _sequence(input_sequence, "input_sequence")
    if not sequence:
        raise InvalidArgument("ConcatFromSequence: the sequence is empty, so the result's shape is unknown")
    rank = sequence[0].ndim + (1 if new_axis else 0)
    if not -rank <= axis < rank:
        raise InvalidArgument(f"axis {axis} is out of range [{-rank}, {rank - 1}]")
    try:
        return np.stack(sequence, axis=axis) if new_axis else np.concatenate(sequence, axis=axis)
    except ValueError as exc:
        raise InvalidArgument(f"ConcatFromSequence: {exc} (shapes {[t.shape for t in sequence]})") from exc


@kernel("SequenceMap", since=17)
def SequenceMap(
    input_sequence: list[np.ndarray],
    *additional_inputs: Any,
    body: Plan,
    _outer: Mapping[Any, Any] | None = None,
) -> Any:
    sequence = _sequence(input_sequence, "input_sequence")
    for index, extra in enumerate(additional_inputs):
        if isinstance(extra, list) and len(extra) != len(sequence):
            raise InvalidArgument(
                f"additional input {index} is a sequence of {len(extra)}, input_sequence has {len(sequence)}"
            )
    results: list[list[Any]] = [[] for _ in body.output_slots]
    for i, item in enumerate(sequence):
        extras = [extra[i] if isinstance(extra, list) else extra for extra in additional_inputs]
        for collected, value in zip(results, body.run([item, *extras], _outer)):
            collected.append(value)
    return results[0] if len(results) == 1 else tuple(results)


@kernel("Optional", since=15)
def Optional(input: Any = None, *, type: Any = None) -> Any:
    if input is None and type is None:
        raise InvalidArgument("Optional without an input needs its 'type' attribute")
    return input


@kernel("OptionalHasElement", since=15)
@kernel("OptionalHasElement", since=18)
def OptionalHasElement(input: Any = None) -> np.ndarray:
    # Opset 18 made the input optional and accepts plain tensors and sequences: both read as "present".
    return np.array(input is not None)


@kernel("OptionalGetElement", since=15)
@kernel("OptionalGetElement", since=18)
def OptionalGetElement(input: Any) -> Any:
    # From opset 18 a plain tensor or sequence passes through; as an optional, it is the held value itself.
    if input is None:
        raise InvalidArgument("OptionalGetElement: the optional is empty")
    return input
