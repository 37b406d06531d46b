"""GridSample (16, 20) and AffineGrid (20): sampling an image at normalised coordinates.

GridSample. ``grid[n, *o]`` holds a point in ``[-1, 1]^D``, innermost spatial axis first (x, y, z). Per
axis of length ``L`` the normalised ``g`` becomes a pixel coordinate ``x = (g + 1) / 2 * (L - 1)`` with
``align_corners``, else ``x = ((g + 1) * L - 1) / 2`` (pixel centres at ``-1 + (2i + 1) / L``). The
valid coordinate range is ``[0, L - 1]`` with ``align_corners``, else ``[-0.5, L - 0.5]``; a coordinate
outside it is clamped to ``[0, L - 1]`` (``border``) or mirrored into it (``reflection``); ``zeros`` leaves
it. Then, separably per axis:

- nearest: ``x`` rounded half to even (``rint``, as PyTorch) before the padding step, one tap;
- linear: taps ``floor(x) + {0, 1}`` weighted ``1 - t, t`` with ``t = x - floor(x)``;
- cubic: taps ``floor(x) + {-1, 0, 1, 2}`` weighted by Keys' kernel with ``A = -0.75`` at distances
  ``1 + t, t, 1 - t, 2 - t``.

A tap outside ``[0, L - 1]`` reads 0 (``zeros``), the edge pixel (``border``) or its mirror image
(``reflection``). The output is ``sum over tap tuples of prod(weights) * X[n, :, taps]``. Coordinates are
computed in float32 as onnx's reference does (it matters for ties of ``rint``/``floor``).

AffineGrid. The base grid holds, per output axis of length ``L``, the coordinates ``linspace(-1, 1, L)``
(``align_corners``) or the pixel centres ``-1 + (2i + 1) / L``; ``grid[n, *o] = theta[n] @ (x, y[, z], 1)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._args import checked_shape, int_list
from onnxforge.runtime.kernels._spatial import compute_dtype
from onnxforge.runtime.registry import kernel

# Taps of one axis: (indices, weights), each shaped (taps, *points).
Taps = tuple[np.ndarray, np.ndarray]

_CUBIC_A = -0.75
_PADDING_MODES = frozenset({"zeros", "border", "reflection"})


def reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``x`` mirrored at ``lo`` and ``hi`` until it lies in ``[lo, hi]`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    span = hi - lo
    if span <= 0:
        return np.full_like(x, lo)
    below, above = x < lo, x > hi
    dist = np.where(below, lo - x, x - hi)
    folds = np.trunc(dist / span)
    rest = dist - folds * span
    even = folds % 2 == 0
    mirrored = np.where(below == even, lo + rest, hi - rest)
    return np.where(below | above, mirrored, x)


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel at distances ``1 + t, t, 1 - t, 2 - t`` (stacked on a new first axis)."""
    a = _CUBIC_A
    u, v, w = t + 1, 1 - t, 2 - t
    return np.stack(
        [
            ((a * u - 5 * a) * u + 8 * a) * u - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * v - (a + 3)) * v * v + 1,
            ((a * w - 5 * a) * w + 8 * a) * w - 4 * a,
        ]
    )


def axis_taps(x: np.ndarray, length: int, mode: str, padding: str, bounds: tuple[float, float]) -> Taps:
    """The taps of one axis for float32 pixel coordinates ``x`` (already padded at coordinate level)."""
    if mode == "nearest":
        index = x.astype(np.int64)[None]
        weight = np.ones_like(x)[None]
    else:
        base = np.floor(x)
        t = x - base
        if mode == "linear":
            offsets = np.arange(2)
            weight = np.stack([1 - t, t])
        else:
            offsets = np.arange(-1, 3)
            weight = _cubic_weights(t)
        index = base.astype(np.int64)[None] + offsets.reshape(-1, *(1,) * x.ndim)
    if padding == "zeros":
        weight = np.where((index >= 0) & (index < length), weight, 0)
    elif padding == "reflection":
        index = np.trunc(reflect(index, *bounds)).astype(np.int64)
    return np.clip(index, 0, max(length - 1, 0)), weight


def gather_sum(
    table: np.ndarray, lead: tuple[np.ndarray, ...], taps: Sequence[Taps], sizes: Sequence[int]
) -> np.ndarray:
    """``sum over tap tuples of prod(weights)[..., None] * table[(*lead, flat index)]``.

    ``table`` is ``(*lead dims, prod(sizes), channels)``; ``lead`` index arrays broadcast against the
    points' shape. Returns ``(*points, channels)`` in ``table``'s dtype.
    """
    strides = [int(np.prod(sizes[i + 1 :], dtype=np.int64)) for i in range(len(sizes))]
    acc: np.ndarray | None = None
    for combo in itertools.product(*(range(index.shape[0]) for index, _ in taps)):
        flat = sum(taps[i][0][j] * strides[i] for i, j in enumerate(combo))
        weight = np.prod([taps[i][1][j] for i, j in enumerate(combo)], axis=0).astype(table.dtype)
        term = table[(*lead, flat)] * weight[..., None]
        acc = term if acc is None else acc + term
    assert acc is not None
    return acc


def _denormalize(g: np.ndarray, length: int, align_corners: int) -> np.ndarray:
    if align_corners:
        x = (g + 1) / 2.0 * (length - 1)
    else:
        x = ((g + 1) * length - 1) / 2.0
    return x.astype(np.float32)


def _grid_sample(X: np.ndarray, grid: np.ndarray, mode: str, padding_mode: str, align_corners: int) -> np.ndarray:
    if padding_mode not in _PADDING_MODES:
        raise InvalidArgument(f"GridSample padding_mode must be zeros, border or reflection, got '{padding_mode}'")
    rank = X.ndim - 2
    if rank < 1 or grid.ndim != X.ndim or grid.shape[0] != X.shape[0] or grid.shape[-1] != rank:
        raise InvalidArgument(
            f"GridSample expects X (N, C, *spatial) and grid (N, *out, {max(rank, 0)}) of the same rank, "
            f"got X {list(X.shape)} and grid {list(grid.shape)}"
        )
    n, c, sizes = X.shape[0], X.shape[1], X.shape[2:]
    out = grid.shape[1:-1]
    if X.size == 0 or grid.size == 0:
        return np.zeros((n, c, *out), dtype=X.dtype)
    g = grid if grid.dtype in (np.float16, np.float32, np.float64) else grid.astype(np.float32)
    taps: list[Taps] = []
    for axis, length in enumerate(sizes):
        x = _denormalize(g[..., rank - 1 - axis], length, align_corners)
        if mode == "nearest":
            x = np.rint(x)
        lo, hi = (0.0, length - 1.0) if align_corners else (-0.5, length - 0.5)
        outside = (x < lo) | (x > hi)
        if padding_mode == "border":
            x = np.where(outside, np.clip(x, 0, length - 1), x).astype(np.float32)
        elif padding_mode == "reflection":
            x = np.where(outside, reflect(x, lo, hi), x).astype(np.float32)
        taps.append(axis_taps(x, length, mode, padding_mode, (lo, hi)))
    table = np.moveaxis(X.reshape(n, c, -1), 1, 2)
    lead = (np.arange(n).reshape(n, *(1,) * len(out)),)
    if mode == "nearest":
        index, weight = zip(*taps)
        strides = [int(np.prod(sizes[i + 1 :], dtype=np.int64)) for i in range(rank)]
        flat = sum(ix[0] * st for ix, st in zip(index, strides))
        inside = np.prod([w[0] for w in weight], axis=0) != 0
        picked = table[(*lead, flat)]
        y = np.where(inside[..., None], picked, np.zeros((), dtype=X.dtype))
    else:
        work = np.dtype(np.complex128) if X.dtype.kind == "c" else compute_dtype(X.dtype)
        if X.dtype.kind in "iub":
            work = np.dtype(np.float64)
        y = gather_sum(table.astype(work, copy=False), lead, taps, sizes)
    return np.ascontiguousarray(np.moveaxis(y, -1, 1)).astype(X.dtype, copy=False)


@kernel("GridSample", since=16)
def GridSample_16(
    X: np.ndarray,
    grid: np.ndarray,
    *,
    align_corners: int = 0,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> np.ndarray:
    modes = {"bilinear": "linear", "nearest": "nearest", "bicubic": "cubic"}
    if mode not in modes:
        raise InvalidArgument(f"GridSample-16 mode must be bilinear, nearest or bicubic, got '{mode}'")
    if X.ndim != 4:
        raise InvalidArgument(f"GridSample-16 takes a 4-D X (N, C, H, W), got shape {list(X.shape)}")
    return _grid_sample(X, grid, modes[mode], padding_mode, align_corners)


@kernel("GridSample", since=20)
def GridSample(
    X: np.ndarray,
    grid: np.ndarray,
    *,
    align_corners: int = 0,
    mode: str = "linear",
    padding_mode: str = "zeros",
) -> np.ndarray:
    if mode not in ("linear", "nearest", "cubic"):
        raise InvalidArgument(f"GridSample mode must be linear, nearest or cubic, got '{mode}'")
    if mode == "cubic" and X.ndim != 4:
        raise InvalidArgument(f"GridSample cubic mode supports only 4-D X (N, C, H, W), got shape {list(X.shape)}")
    return _grid_sample(X, grid, mode, padding_mode, align_corners)


def _base_coordinates(length: int, align_corners: int) -> np.ndarray:
    if length == 1:
        return np.zeros(1)
    if align_corners:
        return np.linspace(-1.0, 1.0, length)
    return (2 * np.arange(length) + 1) / length - 1


@kernel("AffineGrid", since=20)
def AffineGrid(theta: np.ndarray, size: np.ndarray, *, align_corners: int = 0) -> np.ndarray:
    dims = int_list(size, "AffineGrid size")
    if theta.ndim != 3 or theta.shape[1:] not in ((2, 3), (3, 4)):
        raise InvalidArgument(f"AffineGrid theta must be (N, 2, 3) or (N, 3, 4), got shape {list(theta.shape)}")
    rank = theta.shape[1]
    if len(dims) != rank + 2 or dims[0] != theta.shape[0]:
        raise InvalidArgument(
            f"AffineGrid size must be [N={theta.shape[0]}, C, {'D, ' if rank == 3 else ''}H, W] for theta "
            f"{list(theta.shape)}, got {dims}"
        )
    spatial = checked_shape(dims[2:], "AffineGrid")
    axes = [_base_coordinates(length, align_corners) for length in spatial]
    # Homogeneous points (x, y[, z], 1): the innermost output axis supplies x.
    mesh = np.meshgrid(*axes, indexing="ij")
    points = np.stack([*reversed(mesh), np.ones(spatial)], axis=-1).reshape(-1, rank + 1)
    grid = np.einsum("nij,pj->npi", theta.astype(np.float64), points)
    return grid.reshape(theta.shape[0], *spatial, rank).astype(theta.dtype)
