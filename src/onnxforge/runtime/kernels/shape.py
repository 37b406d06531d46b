"""Shape plumbing: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Shape, Size, Expand, Tile,
DepthToSpace, SpaceToDepth.

Ops that only re-view their input (Reshape, Flatten, Squeeze, Unsqueeze, Transpose) return NumPy views;
kernels never write into their inputs, so sharing memory is safe. Ops that materialise a bigger tensor
(Expand, Tile) check the element count first.
"""

from __future__ import annotations

import math

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._args import axis_list, checked_shape, int_list
from onnxforge.runtime.registry import kernel


def _reshape(data: np.ndarray, requested: list[int], allowzero: int) -> np.ndarray:
    dims: list[int] = []
    inferred: int | None = None
    for i, dim in enumerate(requested):
        if dim == -1:
            if inferred is not None:
                raise InvalidArgument(f"Reshape: the requested shape {requested} has more than one -1")
            inferred = i
            dims.append(1)
        elif dim == 0 and not allowzero:
            if i >= data.ndim:
                raise InvalidArgument(
                    f"Reshape: the requested shape {requested} copies dimension {i} (0), "
                    f"but the input has rank {data.ndim}"
                )
            dims.append(data.shape[i])
        elif dim < 0:
            raise InvalidArgument(f"Reshape: the requested shape {requested} has an invalid dimension {dim}")
        else:
            dims.append(dim)
    known = math.prod(dims)
    if inferred is not None:
        if allowzero and 0 in requested:
            raise InvalidArgument(
                f"Reshape: with allowzero=1 the requested shape {requested} cannot hold both 0 and -1"
            )
        if known == 0 or data.size % known:
            raise InvalidArgument(
                f"Reshape: cannot infer the -1 in the requested shape {requested} for an input of shape "
                f"{list(data.shape)} ({data.size} elements)"
            )
        dims[inferred] = data.size // known
    elif known != data.size:
        raise InvalidArgument(
            f"Reshape: the input has shape {list(data.shape)} ({data.size} elements) but the requested shape "
            f"{requested} has {known} elements"
        )
    return data.reshape(dims)


@kernel("Reshape", since=1)
def Reshape_1(
    data: np.ndarray, *, shape: list[int] | None = None, consumed_inputs: list[int] | None = None
) -> np.ndarray:
    if shape is None:
        raise InvalidArgument("Reshape-1 needs the 'shape' attribute")
    return _reshape(data, [int(d) for d in shape], 0)


@kernel("Reshape", since=5)
@kernel("Reshape", since=14)
def Reshape(data: np.ndarray, shape: np.ndarray, *, allowzero: int = 0) -> np.ndarray:
    return _reshape(data, int_list(shape, "Reshape's shape"), allowzero)


@kernel("Flatten", since=1)
def Flatten(input: np.ndarray, *, axis: int = 1) -> np.ndarray:
    rank = input.ndim
    if not -rank <= axis <= rank:
        raise InvalidArgument(f"Flatten: axis {axis} is out of range for rank {rank} (valid: [{-rank}, {rank}])")
    axis = axis + rank if axis < 0 else axis
    outer = math.prod(input.shape[:axis])
    return input.reshape(outer, math.prod(input.shape[axis:]))


def _squeeze(data: np.ndarray, axes: list[int] | None) -> np.ndarray:
    if axes is None:
        return data.reshape([d for d in data.shape if d != 1])
    normalized = axis_list(axes, data.ndim, "Squeeze's axes")
    wrong = [a for a in normalized if data.shape[a] != 1]
    if wrong:
        raise InvalidArgument(
            f"Squeeze: axes {wrong} of the input of shape {list(data.shape)} are not of size 1, so cannot be squeezed"
        )
    return data.reshape([d for i, d in enumerate(data.shape) if i not in normalized])


@kernel("Squeeze", since=1)
def Squeeze_1(data: np.ndarray, *, axes: list[int] | None = None) -> np.ndarray:
    return _squeeze(data, axes)


@kernel("Squeeze", since=13)
def Squeeze(data: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
    return _squeeze(data, None if axes is None else int_list(axes, "Squeeze's axes"))


def _unsqueeze(data: np.ndarray, axes: list[int]) -> np.ndarray:
    rank = data.ndim + len(axes)
    inserted = set(axis_list(axes, rank, "Unsqueeze's axes"))
    dims = iter(data.shape)
    return data.reshape([1 if i in inserted else next(dims) for i in range(rank)])


@kernel("Unsqueeze", since=1)
def Unsqueeze_1(data: np.ndarray, *, axes: list[int] | None = None) -> np.ndarray:
    if axes is None:
        raise InvalidArgument("Unsqueeze needs the 'axes' attribute before opset 13")
    return _unsqueeze(data, axes)


@kernel("Unsqueeze", since=13)
def Unsqueeze(data: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return _unsqueeze(data, int_list(axes, "Unsqueeze's axes"))


@kernel("Transpose", since=1)
def Transpose(data: np.ndarray, *, perm: list[int] | None = None) -> np.ndarray:
    if perm is None:
        return data.transpose()
    if sorted(perm) != list(range(data.ndim)):
        raise InvalidArgument(f"Transpose: perm {perm} is not a permutation of the {data.ndim} axes of the input")
    return data.transpose(perm)


@kernel("Shape", since=1)
@kernel("Shape", since=15)
def Shape(data: np.ndarray, *, start: int = 0, end: int | None = None) -> np.ndarray:
    # Python slicing clamps exactly as the spec asks: negatives count from the back, then clip to [0, rank].
    return np.array(data.shape[start:end], dtype=np.int64)


@kernel("Size", since=1)
def Size(data: np.ndarray) -> np.ndarray:
    return np.array(data.size, dtype=np.int64)


@kernel("Expand", since=8)
def Expand(input: np.ndarray, shape: np.ndarray) -> np.ndarray:
    requested = int_list(shape, "Expand's shape")
    if any(d < 0 for d in requested):
        raise InvalidArgument(f"Expand: the requested shape {requested} has a negative dimension")
    try:
        target = np.broadcast_shapes(input.shape, tuple(requested))
    except ValueError:
        raise InvalidArgument(
            f"Expand: the input shape {list(input.shape)} cannot be broadcast with the requested shape {requested}"
        ) from None
    checked_shape(target, "Expand")
    # A copy, not a broadcast view: callers (and users receiving graph outputs) expect a writable array.
    return np.array(np.broadcast_to(input, target))


@kernel("Tile", since=6)
def Tile(input: np.ndarray, repeats: np.ndarray) -> np.ndarray:
    counts = int_list(repeats, "Tile's repeats")
    if len(counts) != input.ndim:
        raise InvalidArgument(f"Tile: repeats has {len(counts)} values but the input has rank {input.ndim}")
    if any(c < 0 for c in counts):
        raise InvalidArgument(f"Tile: repeats {counts} must not be negative")
    checked_shape([d * c for d, c in zip(input.shape, counts)], "Tile")
    return np.tile(input, counts)


def _blocks(input: np.ndarray, blocksize: int | None, op: str) -> tuple[int, int, int, int, int]:
    if input.ndim != 4:
        raise InvalidArgument(f"{op}: the input must have rank 4 (N, C, H, W), got shape {list(input.shape)}")
    if blocksize is None or blocksize < 1:
        raise InvalidArgument(f"{op}: blocksize must be a positive integer, got {blocksize}")
    n, c, h, w = input.shape
    return n, c, h, w, blocksize


@kernel("DepthToSpace", since=1)
def DepthToSpace(input: np.ndarray, *, blocksize: int | None = None, mode: str = "DCR") -> np.ndarray:
    n, c, h, w, b = _blocks(input, blocksize, "DepthToSpace")
    if c % (b * b):
        raise InvalidArgument(f"DepthToSpace: channels {c} are not divisible by blocksize**2 = {b * b}")
    if mode == "DCR":
        moved = input.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        moved = input.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        raise InvalidArgument(f"DepthToSpace: mode must be 'DCR' or 'CRD', got {mode!r}")
    return moved.reshape(n, c // (b * b), h * b, w * b)


@kernel("SpaceToDepth", since=1)
@kernel("SpaceToDepth", since=28)
def SpaceToDepth(input: np.ndarray, *, blocksize: int | None = None, mode: str = "DCR") -> np.ndarray:
    n, c, h, w, b = _blocks(input, blocksize, "SpaceToDepth")
    if h % b or w % b:
        raise InvalidArgument(f"SpaceToDepth: height {h} and width {w} must be divisible by blocksize {b}")
    blocks = input.reshape(n, c, h // b, b, w // b, b)
    if mode == "DCR":
        moved = blocks.transpose(0, 3, 5, 1, 2, 4)
    elif mode == "CRD":
        moved = blocks.transpose(0, 1, 3, 5, 2, 4)
    else:
        raise InvalidArgument(f"SpaceToDepth: mode must be 'DCR' or 'CRD', got {mode!r}")
    return moved.reshape(n, c * b * b, h // b, w // b)
