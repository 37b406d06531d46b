"""A conv weight packed once, at plan-build time, for the strategy :mod:`conv` picks from its shape.

- pointwise (1x1): the ``(G, Mg, Cg)`` matrix;
- depthwise (one input channel per group): per-kernel-position taps, and channels-last taps for 2-D float32;
- im2col: the ``(G, Mg, Cg * K)`` matrix, with a constant bias as an extra column (it meets a row of ones
  in the column buffer, which saves a whole pass over the output).

Output channels with identical filters (and biases) are computed once and copied (``compact`` and
``expand``), see :class:`PackedWeight`.
"""

from __future__ import annotations

import functools

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._depthwise import DepthwiseTaps
from onnxforge.runtime.kernels._implicit_gemm import tap_stack
from onnxforge.runtime.kernels._spatial import compute_dtype, prod


@functools.lru_cache(maxsize=64)
def _probe_direction(length: int) -> np.ndarray:
    """A fixed, irregular direction of ``length`` (read-only): the fractional parts of multiples of the golden
    ratio, centred. Not ``np.random``: its first use imports numpy.random, ~40 ms of the first session of a
    process (a new generator per conv also cost ~30 us). Any direction works: ties are checked exactly."""
    direction = ((np.arange(1, length + 1, dtype=np.float64) * 0.6180339887498949) % 1.0 - 0.5).astype(np.float32)
    direction.flags.writeable = False
    return direction


def _projection(rows: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """``rows @ direction``, computed the same way for every row: BLAS's product rounds a row differently
    depending on where it sits in its block, which made equal filters project apart (3 of 6 channels here
    were copies of 2 others, and the product found 1 of the 3)."""
    return np.multiply(rows, direction).sum(axis=1)


def _all_distinct(values: np.ndarray) -> bool:
    """Whether no two of ``values`` are equal (a sort: ``np.unique``'s first call imports ~18 ms of modules)."""
    ordered = np.sort(values)
    return not (ordered[1:] == ordered[:-1]).any()  # the method: np.all's wrapper cost more than the test


def check_weight(shape: tuple[int, ...], group: int) -> None:
    """Raise what packing a conv weight of ``shape`` for ``group`` groups would raise."""
    if len(shape) < 3:
        raise InvalidArgument(f"Conv weight must be (M, C/group, k1, ...), got shape {list(shape)}")
    m = int(shape[0])
    if group < 1 or m % group:
        raise InvalidArgument(f"Conv: {m} output channels are not divisible by group={group}")


class PackedWeight:
    """A conv weight reshaped for its strategy, in the compute dtype.

    With a constant bias, the im2col strategy folds it into the matmul as an extra weight column that
    meets a row of ones in the column buffer, which saves a whole pass over the output.

    Output channels with identical filters (and biases) are computed once and copied (``compact`` and
    ``expand``): BLAS rounds a row differently depending on where it sits in its tile, so computing the
    copies would make equal channels differ by an ulp, which e.g. a Softmax over huge equal logits (onnx's
    light models, whose weights are ConstantOfShape) turns into a wrong answer.
    """

    __slots__ = (
        "cg",
        "compact",
        "dtype",
        "expand",
        "folded",
        "group",
        "hwc_taps",
        "kernel",
        "kind",
        "m",
        "matrix",
        "taps",
        "tap_stack",
    )

    def __init__(self, w: np.ndarray, group: int, bias: np.ndarray | None = None) -> None:
        check_weight(w.shape, group)
        m, cg = int(w.shape[0]), int(w.shape[1])
        self.dtype = compute_dtype(w.dtype)
        self.group, self.m, self.cg, self.kernel = group, m, cg, tuple(int(v) for v in w.shape[2:])
        wc = w.astype(self.dtype, copy=False)
        ksize = prod(self.kernel)
        self.taps: list[np.ndarray] = []
        self.tap_stack: np.ndarray | None = None  # (kernel positions, M, Cg) for _implicit_gemm
        self.hwc_taps: DepthwiseTaps | None = None
        if ksize == 1:
            self.kind = "pointwise"
        elif cg == 1 and group > 1:
            self.kind = "depthwise"
            # (C, mult, 1, ..., 1) per kernel position, broadcast against (N, C, 1, *out) slices.
            per_tap = wc.reshape(group, m // group, ksize)
            ones = (1,) * len(self.kernel)
            self.taps = [np.ascontiguousarray(per_tap[:, :, j]).reshape(group, m // group, *ones) for j in range(ksize)]
            if len(self.kernel) == 2 and m == group and self.dtype == np.float32:
                self.hwc_taps = DepthwiseTaps(wc)
        else:
            self.kind = "im2col"
        matrix = wc.reshape(group, m // group, cg * ksize)
        self.folded = self.kind == "im2col" and bias is not None and bias.shape == (m,)
        if self.folded:
            assert bias is not None
            matrix = np.concatenate([matrix, bias.astype(self.dtype).reshape(group, m // group, 1)], axis=2)
        self.matrix = np.ascontiguousarray(matrix)
        if self.kind == "im2col":
            self.tap_stack = tap_stack(self.matrix, cg, self.kernel)
        self.compact: PackedWeight | None = None
        self.expand: np.ndarray | None = None
        if group == 1 and m > 1 and self.kind != "depthwise":
            self._dedupe_rows()

    def _dedupe_rows(self) -> None:
        rows = self.matrix[0]
        # Rows with different projections on a random direction differ; rows that tie are compared exactly
        # against the first row of their tie group (a row that differs after all keeps its own place).
        # Trained weights almost never share even their first few columns: rows whose first entries all
        # differ are all distinct, settled by one sort (DenseNet-121's 182 convs: 0.6 ms against 2.0 for
        # projecting the first eight columns); projecting those comes next, at a fraction of the whole matrix.
        if rows.shape[1] and _all_distinct(rows[:, 0]):
            return
        direction = _probe_direction(rows.shape[1]).astype(rows.dtype, copy=False)
        head = min(rows.shape[1], 8)
        if _all_distinct(_projection(rows[:, :head], direction[:head])):
            return
        probe = _projection(rows, direction)
        if _all_distinct(probe):
            return
        _, first, group = np.unique(probe, return_index=True, return_inverse=True)
        if first.size == rows.shape[0]:
            return
        representative = first[group.reshape(-1)]
        same = np.all(rows == rows[representative], axis=1)
        representative = np.where(same, representative, np.arange(rows.shape[0]))
        keep = np.unique(representative)
        if keep.size == rows.shape[0]:
            return
        unique, inverse = rows[keep], np.searchsorted(keep, representative)
        compact = object.__new__(PackedWeight)
        for name in ("cg", "dtype", "folded", "group", "hwc_taps", "kernel", "kind", "taps"):
            setattr(compact, name, getattr(self, name))
        compact.m, compact.matrix = unique.shape[0], np.ascontiguousarray(unique[None])
        compact.compact, compact.expand = None, None
        compact.tap_stack = tap_stack(compact.matrix, self.cg, self.kernel) if self.kind == "im2col" else None
        self.compact, self.expand = compact, inverse.reshape(-1)
