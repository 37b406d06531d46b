"""The implicit-GEMM conv path (one product per kernel position, no column buffer) against im2col."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.runtime.kernels import conv
from onnxforge.runtime.kernels._implicit_gemm import implicit_gemm, pays
from onnxforge.runtime.kernels._packed_weight import PackedWeight
from onnxforge.runtime.threads import blas_threads

CASES = [
    # (batch, C, M, spatial, kernel, pads (begins + ends), dilations)
    (1, 64, 16, (7, 7), (3, 3), (1, 1, 1, 1), (1, 1)),
    (3, 32, 8, (5, 6), (3, 3), (0, 1, 2, 0), (1, 1)),
    (2, 16, 8, (9, 8), (3, 2), (2, 1, 2, 1), (2, 3)),
    (2, 8, 4, (20,), (3,), (1, 0), (1,)),
    (1, 4, 2, (4, 5, 6), (2, 2, 2), (1, 0, 1, 0, 1, 0), (1, 1, 1)),
]


def _conv(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, pads: tuple[int, ...], dilations: tuple[int, ...]
) -> np.ndarray:
    pw = PackedWeight(w, 1, b)
    return conv._conv(x, pw, b, "NOTSET", list(pads), [1] * (x.ndim - 2), list(dilations))


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize(("n", "c", "m", "spatial", "kernel", "pads", "dilations"), CASES)
def test_matches_im2col(
    monkeypatch: pytest.MonkeyPatch,
    n: int,
    c: int,
    m: int,
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    pads: tuple[int, ...],
    dilations: tuple[int, ...],
    with_bias: bool,
) -> None:
    rng = np.random.default_rng(n * 100 + c)
    x = rng.standard_normal((n, c, *spatial), dtype=np.float32)
    w = rng.standard_normal((m, c, *kernel), dtype=np.float32)
    b = rng.standard_normal(m, dtype=np.float32) if with_bias else None
    pw = PackedWeight(w, 1, b)
    rank = len(spatial)
    begins = pads[:rank]
    out = tuple(
        (size + pb + pe - di * (k - 1) - 1) + 1
        for size, pb, pe, di, k in zip(spatial, begins, pads[rank:], dilations, kernel)
    )
    got = implicit_gemm(x, pw, begins, out, kernel, dilations)
    if b is not None and not pw.folded:
        got = got + b.reshape(m, *(1,) * rank)
    monkeypatch.setattr(conv, "pays", lambda *args: False)
    expected = _conv(x, w, b, pads, dilations)
    assert got.shape == expected.shape == (n, m, *out) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_conv_takes_the_path_and_keeps_duplicate_filters_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 64, 9, 9), dtype=np.float32)
    w = rng.standard_normal((24, 64, 3, 3), dtype=np.float32)
    w[5] = w[2]  # a duplicate filter: PackedWeight computes it once and copies it
    b = rng.standard_normal(24, dtype=np.float32)
    b[5] = b[2]
    calls: list[int] = []

    def counting(*args: object) -> np.ndarray:
        calls.append(1)
        return implicit_gemm(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(conv, "implicit_gemm", counting)
    got = _conv(x, w, b, (1, 1, 1, 1), (1, 1))
    assert calls == [1]
    assert np.array_equal(got[0, 5], got[0, 2])
    monkeypatch.setattr(conv, "pays", lambda *args: False)
    np.testing.assert_allclose(got, _conv(x, w, b, (1, 1, 1, 1), (1, 1)), rtol=1e-4, atol=1e-4)


def test_split_across_threads_matches_one_thread() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 128, 14, 14), dtype=np.float32)
    w = rng.standard_normal((32, 128, 3, 3), dtype=np.float32)
    b = rng.standard_normal(32, dtype=np.float32)
    with blas_threads(1):
        one = _conv(x, w, b, (1, 1, 1, 1), (1, 1))
    with blas_threads(2):
        two = _conv(x, w, b, (1, 1, 1, 1), (1, 1))
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5)


def _weight(m: int, c: int, kernel: tuple[int, ...] = (3, 3), group: int = 1, dtype: type = np.float32) -> PackedWeight:
    return PackedWeight(np.ones((m, c // group, *kernel), dtype=dtype), group)


def test_pays_only_for_few_filters_over_many_channels_on_small_images() -> None:
    small = (14, 14)
    assert pays(_weight(32, 128), (1, 1), small, 1, 1)
    assert pays(_weight(64, 128), (1, 1), (16, 16), 1, 1)
    assert _weight(32, 128).tap_stack.shape == (9, 32, 128)  # packed once, with the weight
    assert not pays(_weight(65, 256), (1, 1), small, 1, 1)  # too many filters
    assert not pays(_weight(48, 64), (1, 1), small, 1, 1)  # not at most half the input channels
    assert not pays(_weight(32, 128), (2, 2), small, 1, 1)  # strided
    assert not pays(_weight(32, 128, group=2), (1, 1), small, 1, 1)  # grouped
    assert not pays(_weight(32, 128, kernel=(1, 1)), (1, 1), small, 1, 1)  # pointwise
    assert not pays(_weight(32, 128), (1, 1), (28, 28), 1, 1)  # a large image
    assert not pays(_weight(32, 128, dtype=np.float64), (1, 1), small, 1, 1)
    assert not pays(_weight(32, 128), (1, 1), small, 1, 2)  # im2col splits a small image better
    assert pays(_weight(32, 128), (1, 1), small, 6, 2)  # enough outputs to split
