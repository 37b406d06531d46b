"""MaxPool over flattened images (kernels/_pool_flat.py) equals the padded reference; pools whose windows
read pads are left to the other paths."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.runtime.kernels import _pool_flat, max_pool, pool
from onnxforge.runtime.kernels._spatial import pad_for_windows, pool_geometry
from onnxforge.runtime.threads import blas_threads

RNG = np.random.default_rng(11)

# (kernel, strides, pads, ceil_mode) whose windows never reach into the pads: squeezenet's and VGG's
# unpadded pools, stride 1, a 1-wide axis, uneven kernels, and an end pad that no window reads (61x57).
GEOMETRIES = [
    ((3, 3), (2, 2), (0, 0, 0, 0), 0),
    ((2, 2), (2, 2), (0, 0, 0, 0), 0),
    ((3, 3), (1, 1), (0, 0, 0, 0), 0),
    ((1, 3), (1, 2), (0, 0, 0, 0), 0),
    ((5, 4), (3, 2), (0, 0, 0, 0), 0),
    ((3, 3), (2, 2), (0, 0, 1, 1), 0),
]
# Windows that read pads: a begin pad, an end pad that is read, ceil mode past the end.
DECLINED = [
    ((3, 3), (2, 2), (1, 1, 1, 1), 0),
    ((2, 2), (2, 2), (0, 0, 1, 1), 0),
    ((2, 2), (2, 2), (0, 0, 0, 0), 1),
]


def _reference(x: np.ndarray, kernel, strides, begins, out) -> np.ndarray:
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    padded = pad_for_windows(x, begins, out, kernel, strides, (1, 1), low)
    return pool.reduce_windows(padded, kernel, strides, (1, 1), out, np.maximum)


@pytest.mark.parametrize(("kernel", "strides", "pads", "ceil_mode"), GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
def test_flat_maxpool_equals_the_padded_reference(kernel, strides, pads, ceil_mode, dtype) -> None:
    x = (RNG.standard_normal((2, 9, 61, 57)) * 40).astype(dtype)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(dtype).min
    x[0, 0, 0, :3] = low  # a border minimum must not let a pad or a neighbouring row's value leak in
    x[1, 8, -1, -1] = 100 if dtype == np.int8 else 1e6  # the last element: a junk read past it would show
    begins, _, out = pool_geometry("NOTSET", x.shape[2:], kernel, strides, (1, 1), pads, ceil_mode)
    got = _pool_flat.max_windows_flat(x, kernel, strides, (1, 1), begins, out)
    assert got is not None and got.dtype == dtype and got.shape == (2, 9, *out)
    np.testing.assert_array_equal(got, _reference(x, kernel, strides, begins, out))
    assert not np.shares_memory(got, x)


@pytest.mark.parametrize(("kernel", "strides", "pads", "ceil_mode"), GEOMETRIES[:2])
def test_runs_split_across_threads_equal_one_thread(kernel, strides, pads, ceil_mode) -> None:
    x = RNG.standard_normal((1, 37, 90, 90)).astype(np.float32)  # 37 images: runs of unequal length
    begins, _, out = pool_geometry("NOTSET", x.shape[2:], kernel, strides, (1, 1), pads, ceil_mode)
    one = _pool_flat.max_windows_flat(x, kernel, strides, (1, 1), begins, out)
    with blas_threads(2):
        two = _pool_flat.max_windows_flat(x, kernel, strides, (1, 1), begins, out)
    assert one is not None and two is not None
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, _reference(x, kernel, strides, begins, out))


@pytest.mark.parametrize(("kernel", "strides", "pads", "ceil_mode"), GEOMETRIES[:3])
def test_big_runs_pooled_in_cache_sized_runs_equal_the_reference(kernel, strides, pads, ceil_mode, monkeypatch) -> None:
    """Over _CHUNKED_BYTES a run is pooled in runs of _RUN_BYTES: 7 images as 3 + 3 + 1 on one thread, and each
    thread's run (3 and 4 images) cut again on two."""
    x = RNG.standard_normal((1, 7, 130, 120)).astype(np.float32)
    x[0, 6, -1, -1] = 1e6  # the last image's last element: a run boundary must not cut or spill into it
    monkeypatch.setattr(_pool_flat, "_CHUNKED_BYTES", x[0, 0].nbytes * 2)
    monkeypatch.setattr(_pool_flat, "_RUN_BYTES", x[0, 0].nbytes * 3)
    calls = []
    run = _pool_flat._pool_run
    monkeypatch.setattr(_pool_flat, "_pool_run", lambda a, *rest: (calls.append(a.shape[0]), run(a, *rest))[1])
    begins, _, out = pool_geometry("NOTSET", x.shape[2:], kernel, strides, (1, 1), pads, ceil_mode)
    got = _pool_flat.max_windows_flat(x, kernel, strides, (1, 1), begins, out)
    assert calls == [3, 3, 1]
    assert got is not None
    np.testing.assert_array_equal(got, _reference(x, kernel, strides, begins, out))
    calls.clear()
    with blas_threads(2):
        two = _pool_flat.max_windows_flat(x, kernel, strides, (1, 1), begins, out)
    assert sorted(calls) == [1, 3, 3]
    np.testing.assert_array_equal(two, got)


@pytest.mark.parametrize(("kernel", "strides", "pads", "ceil_mode"), DECLINED)
def test_pools_whose_windows_read_pads_are_declined(kernel, strides, pads, ceil_mode) -> None:
    x = RNG.standard_normal((2, 9, 61, 57)).astype(np.float32)
    begins, _, out = pool_geometry("NOTSET", x.shape[2:], kernel, strides, (1, 1), pads, ceil_mode)
    assert _pool_flat.max_windows_flat(x, kernel, strides, (1, 1), begins, out) is None


def test_the_path_declines_what_it_does_not_cover() -> None:
    big = RNG.standard_normal((1, 8, 80, 80)).astype(np.float32)
    geometry = ((3, 3), (2, 2), (1, 1), (0, 0), (39, 39))
    assert _pool_flat.max_windows_flat(big, *geometry) is not None
    assert _pool_flat.max_windows_flat(big, (3, 3), (2, 2), (2, 2), (0, 0), (38, 38)) is None  # dilated
    assert _pool_flat.max_windows_flat(big[:, :, :, ::2], (3, 3), (2, 2), (1, 1), (0, 0), (39, 19)) is None  # strided
    assert (
        _pool_flat.max_windows_flat(big[:, :, :10, :10].copy(), (3, 3), (2, 2), (1, 1), (0, 0), (4, 4)) is None
    )  # small


def test_maxpool_node_uses_it_and_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []

    def counted(*args):
        result = _pool_flat.max_windows_flat(*args)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(max_pool, "max_windows_flat", counted)
    x = RNG.standard_normal((1, 64, 111, 111)).astype(np.float32)  # squeezenet's first pool
    got = max_pool.MaxPool_10(x, kernel_shape=[3, 3], strides=[2, 2])
    assert calls == [True]
    begins, _, out = pool_geometry("NOTSET", x.shape[2:], (3, 3), (2, 2), (1, 1), (0, 0, 0, 0), 0)
    np.testing.assert_array_equal(got, _reference(x, (3, 3), (2, 2), begins, out))


# Padded pools whose every window holds an image element: begin pads, read end pads, ceil mode, stride 1.
EDGE_GEOMETRIES = [
    ((3, 3), (2, 2), (1, 1, 1, 1), 0),
    ((3, 3), (2, 2), (0, 0, 1, 1), 0),  # Inception's
    ((3, 3), (1, 1), (1, 1, 1, 1), 0),
    ((2, 2), (2, 2), (0, 0, 0, 0), 1),
    ((3, 2), (2, 1), (2, 0, 1, 1), 0),
    ((3, 3), (2, 2), (1, 2, 1, 0), 1),
]


@pytest.mark.parametrize(("kernel", "strides", "pads", "ceil_mode"), EDGE_GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
def test_padded_small_images_pool_through_an_edge_repeating_copy(kernel, strides, pads, ceil_mode, dtype) -> None:
    x = (RNG.standard_normal((2, 40, 29, 31)) * 40).astype(dtype)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(dtype).min
    x[0, 0, 0, :] = low  # a whole border row at the minimum: a window over it and the pad must still see -inf
    x[1, 3, :, -1] = 100 if dtype == np.int8 else 1e6  # the right edge, repeated into the end pad
    if x.dtype.kind == "f":
        x[1, 5, 0, 0] = np.nan  # repeated into the top-left pads: only windows holding it turn NaN
    begins, _, out = pool_geometry("NOTSET", x.shape[2:], kernel, strides, (1, 1), pads, ceil_mode)
    got = _pool_flat.max_windows_edge(x, kernel, strides, (1, 1), begins, out)
    assert got is not None and got.dtype == dtype and got.shape == (2, 40, *out)
    np.testing.assert_array_equal(got, _reference(x, kernel, strides, begins, out))


def test_the_edge_path_declines_what_would_not_be_exact_or_pay() -> None:
    x = RNG.standard_normal((1, 64, 30, 30)).astype(np.float32)
    assert _pool_flat.max_windows_edge(x, (3, 3), (2, 2), (1, 1), (1, 1), (15, 15)) is not None
    assert _pool_flat.max_windows_edge(x, (3, 3), (2, 2), (1, 1), (3, 3), (16, 16)) is None  # windows wholly in pads
    assert _pool_flat.max_windows_edge(x, (3, 3), (2, 2), (1, 1), (-1, -1), (14, 14)) is None  # a cropping pad
    assert _pool_flat.max_windows_edge(x, (3, 3), (2, 2), (2, 2), (1, 1), (15, 15)) is None  # dilated
    wide = RNG.standard_normal((1, 8, 20, 112)).astype(np.float32)
    assert _pool_flat.max_windows_edge(wide, (3, 3), (2, 2), (1, 1), (1, 1), (10, 56)) is None  # rows long enough


@pytest.mark.parametrize("pads", [(0, 0, 1, 1), (1, 1, 1, 1)])
def test_maxpool_kernel_takes_the_edge_path_for_inception_pools(pads, monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bool] = []

    def spy(*args):
        result = _pool_flat.max_windows_edge(*args)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(max_pool, "max_windows_edge", spy)
    x = RNG.standard_normal((1, 96, 28, 28)).astype(np.float32)
    call = max_pool._prepare_max_pool([None], kernel_shape=[3, 3], strides=[2, 2], pads=list(pads))
    assert call is not None
    begins, _, out = pool_geometry("NOTSET", x.shape[2:], (3, 3), (2, 2), (1, 1), pads, 0)
    np.testing.assert_array_equal(call(x), _reference(x, (3, 3), (2, 2), begins, out))
    assert taken == [True]
