"""2-D AveragePool by matrix products (kernels/_pool_matrix.py) against the direct separable kernel."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from onnxforge.runtime.kernels import _pool_matrix
from onnxforge.runtime.kernels.pool import AveragePool_19, _sum_pool

RNG = np.random.default_rng(5)


def _direct(x: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    full = {
        "auto_pad": "NOTSET",
        "ceil_mode": 0,
        "count_include_pad": 0,
        "dilations": None,
        "pads": None,
        "strides": None,
    }
    return _sum_pool(x, **{**full, **attrs})


GEOMETRIES = [
    {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    {"kernel_shape": [2, 3], "strides": [2, 1], "pads": [0, 1, 1, 0], "ceil_mode": 1},
    {"kernel_shape": [3, 2], "strides": [2, 3], "dilations": [2, 1], "pads": [2, 0, 1, 1]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
    {"kernel_shape": [7, 7]},
]


@pytest.mark.parametrize("side", [7, 20])  # one merged GEMM (small image), two products (larger)
@pytest.mark.parametrize("attrs", GEOMETRIES)
def test_matrix_averages_equal_the_direct_kernel(attrs: dict[str, Any], side: int) -> None:
    call = _pool_matrix.prepare_average_pool(AveragePool_19, attrs)
    assert call is not None
    for dtype in (np.float32, np.float64):
        x = RNG.standard_normal((2, 3, side, side + 1)).astype(dtype)
        got, want = call(x), _direct(x, attrs)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_both_paths_are_taken() -> None:
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    small = _pool_matrix._Products((1, 2, 7, 7), np.dtype(np.float32), attrs)
    large = _pool_matrix._Products((1, 2, 20, 20), np.dtype(np.float32), attrs)
    assert small.merged is not None and small.merged.shape == (49, 49)
    assert large.merged is None and large.rows.shape == (20, 20)


@pytest.mark.parametrize(
    ("kernel", "shape"),
    [
        ((2, 2), (2, 3, 8, 6)),
        ((3, 3), (1, 2, 9, 12)),
        ((2, 4), (1, 3, 6, 8)),
        ((1, 2), (1, 2, 3, 4)),
        ((3, 1), (1, 1, 6, 5)),
    ],
)
def test_windows_that_tile_the_image_are_summed_without_matrices(
    kernel: tuple[int, int], shape: tuple[int, ...]
) -> None:
    attrs = {"kernel_shape": list(kernel), "strides": list(kernel)}
    call = _pool_matrix.prepare_average_pool(AveragePool_19, attrs)
    assert call is not None
    assert isinstance(_pool_matrix._tiles(shape, np.dtype(np.float32), attrs), _pool_matrix._Tiles)
    for dtype in (np.float32, np.float64):
        x = RNG.standard_normal(shape).astype(dtype)
        x[0, 0, 0, 0], x[0, -1, -1, -1] = np.inf, np.nan  # plain sums: exactly the direct kernel's non-finites
        got, want = call(x), _direct(x, attrs)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
        assert np.isinf(got[0, 0, 0, 0]) and np.isnan(got[0, -1, -1, -1])
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1]},  # padded
        {"kernel_shape": [2, 2], "strides": [1, 1]},  # overlapping
        {"kernel_shape": [2, 2], "strides": [2, 2], "dilations": [2, 2]},
        {"kernel_shape": [3, 3], "strides": [3, 3]},  # 8 is not a whole number of windows
        {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    ],
)
def test_pools_that_do_not_tile_exactly_keep_the_matrix_path(attrs: dict[str, Any]) -> None:
    assert _pool_matrix._tiles((1, 2, 8, 8), np.dtype(np.float32), attrs) is None
    call = _pool_matrix.prepare_average_pool(AveragePool_19, attrs)
    assert call is not None
    x = RNG.standard_normal((1, 2, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(call(x), _direct(x, attrs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("side", [7, 20])
def test_infinite_and_nan_inputs_average_like_the_direct_kernel(side: int) -> None:
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    call = _pool_matrix.prepare_average_pool(AveragePool_19, attrs)
    assert call is not None
    x = RNG.standard_normal((1, 2, side, side)).astype(np.float32)
    x[0, 0, 0, 0] = np.inf
    x[0, 1, side - 1, side - 1] = np.nan
    got, want = call(x), _direct(x, attrs)
    # Only the windows that hold the inf (or the NaN) are non-finite, as in the direct sum.
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    assert np.isinf(got[0, 0, 0, 0]) and np.isnan(got[0, 1, -1, -1])
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-5, atol=1e-6)


def test_other_ranks_and_dtypes_use_the_direct_kernel() -> None:
    assert _pool_matrix.prepare_average_pool(AveragePool_19, {"kernel_shape": [3]}) is None
    call = _pool_matrix.prepare_average_pool(AveragePool_19, {"kernel_shape": [2, 2]})
    assert call is not None
    x = RNG.standard_normal((1, 1, 4, 4)).astype(np.float16)
    got = call(x)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, _direct(x, {"kernel_shape": [2, 2]}))


def test_a_window_wholly_in_the_padding_averages_to_zero() -> None:
    matrix = _pool_matrix.averaging_matrix(3, 4, 0, 3, 2, 2, 1, False, np.dtype(np.float32))
    # Output 0 reads padded positions -4, -3 only: an empty row; output 2 reads input 0 and 1.
    assert matrix.shape == (3, 3)
    np.testing.assert_array_equal(matrix[0], 0)
    np.testing.assert_allclose(matrix[2], [0.5, 0.5, 0])


MAX_GEOMETRIES = [
    ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 0),
    ((3, 2), (1, 3), (2, 1), (2, 0, 0, 1), 0),
    ((2, 2), (2, 2), (1, 1), (0, 0, 0, 0), 1),
    ((3, 3), (3, 2), (1, 2), (0, 1, 2, 1), 1),
]


@pytest.mark.parametrize(("kernel", "strides", "dilations", "pads", "ceil_mode"), MAX_GEOMETRIES)
def test_maxpool_without_padding_copies_equals_the_padded_kernel(
    kernel: tuple[int, int], strides: tuple[int, int], dilations: tuple[int, int], pads: tuple[int, ...], ceil_mode: int
) -> None:
    from onnxforge.runtime.kernels import _pool_windows, pool
    from onnxforge.runtime.kernels._spatial import pad_for_windows, pool_geometry

    for dtype in (np.float32, np.int8):
        x = (RNG.standard_normal((2, 3, 9, 10)) * 50).astype(dtype)
        x[0, 0, 0, :3] = -np.inf if dtype == np.float32 else -128  # a border minimum must not leak a pad value
        begins, _, out = pool_geometry("NOTSET", (9, 10), kernel, strides, dilations, pads, ceil_mode)
        got = _pool_windows.max_windows_unpadded(x, kernel, strides, dilations, begins, out)
        low = -np.inf if dtype == np.float32 else -128
        padded = pad_for_windows(x, begins, out, kernel, strides, dilations, low)
        want = pool.reduce_windows(padded, kernel, strides, dilations, out, np.maximum)
        assert got is not None and got.dtype == dtype
        np.testing.assert_array_equal(got, want)
        assert not np.shares_memory(got, x)


def test_maxpool_pads_when_a_window_lies_wholly_in_the_padding() -> None:
    from onnxforge.runtime.kernels import _pool_windows

    x = RNG.standard_normal((1, 1, 4, 4)).astype(np.float32)
    # begin pad 3 with a 2-wide kernel and stride 2: output 0 reads positions -3 and -2 only.
    assert _pool_windows.max_windows_unpadded(x, (2, 2), (2, 2), (1, 1), (3, 0), (3, 2)) is None


@pytest.mark.parametrize(("kernel", "strides", "dilations", "pads", "ceil_mode"), MAX_GEOMETRIES)
def test_maxpool_split_across_threads_equals_one_thread(
    kernel: tuple[int, int], strides: tuple[int, int], dilations: tuple[int, int], pads: tuple[int, ...], ceil_mode: int
) -> None:
    from onnxforge.runtime.kernels import _pool_windows
    from onnxforge.runtime.kernels._spatial import pool_geometry
    from onnxforge.runtime.threads import blas_threads

    x = RNG.standard_normal((2, 7, 80, 91)).astype(np.float32)  # 7 channels: unequal halves
    begins, _, out = pool_geometry("NOTSET", (80, 91), kernel, strides, dilations, pads, ceil_mode)
    one = _pool_windows.max_windows_unpadded(x, kernel, strides, dilations, begins, out)
    assert one is not None and x.size >= _pool_windows._PARALLEL_MIN_SIZE
    with blas_threads(2):
        two = _pool_windows.max_windows_unpadded(x, kernel, strides, dilations, begins, out)
    assert two is not None and two.shape == (2, 7, *out) and two.dtype == np.float32
    np.testing.assert_array_equal(two, one)
