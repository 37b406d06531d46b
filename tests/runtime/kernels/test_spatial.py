"""Spatial helpers shared by the conv and pool kernels (runtime/kernels/_spatial.py)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.runtime.kernels._spatial import pad_for_windows


@pytest.mark.parametrize(
    ("shape", "begins", "out", "k", "s", "d"),
    [
        ((2, 3, 7, 6), (1, 2), (7, 5), (3, 3), (1, 1), (1, 1)),  # pads on every side
        ((1, 2, 9), (2,), (5,), (3,), (2,), (1,)),  # 1-D, end pad beyond the input
        ((1, 2, 5, 4, 3), (1, 0, 1), (5, 3, 3), (3, 2, 3), (1, 1, 1), (1, 1, 1)),  # 3-D, no pad on one axis
        ((1, 1, 8, 8), (-1, 1), (3, 4), (2, 3), (2, 2), (1, 1)),  # a negative pad crops
        ((1, 1, 6, 6), (0, 0), (3, 3), (3, 3), (1, 2), (2, 1)),  # dilated: the unread end is cut
    ],
)
@pytest.mark.parametrize("value", [0.0, -np.inf])
def test_pad_for_windows_pads_like_np_pad_and_fills_only_the_border(
    shape: tuple[int, ...],
    begins: tuple[int, ...],
    out: tuple[int, ...],
    k: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
    value: float,
) -> None:
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    got = pad_for_windows(x, begins, out, k, s, d, value)
    needed = [(o - 1) * si + di * (ki - 1) + 1 for o, ki, si, di in zip(out, k, s, d)]
    widths = [(0, 0), (0, 0)] + [(max(b, 0), max(0, need - b - n)) for b, need, n in zip(begins, needed, shape[2:])]
    cropped = x[(slice(None), slice(None), *(slice(max(0, -b), None) for b in begins))]
    want = np.pad(cropped, widths, constant_values=value)[(slice(None), slice(None), *(slice(0, n) for n in needed))]
    assert got.shape == (*shape[:2], *needed) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
