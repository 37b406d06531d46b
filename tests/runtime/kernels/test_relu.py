"""ReLU against zero pages (kernels/_relu.py): same numbers as np.maximum(x, 0), for every float dtype."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.runtime.kernels import _relu
from onnxforge.runtime.kernels._relu import relu, relu_into, zeros_like


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 5), (2, 64, 9, 9), (70_000,)])
def test_relu_matches_maximum_against_scalar_zero(dtype: type, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    x.flat[:4] = [np.nan, -np.inf, np.inf, -0.0]
    expected = np.maximum(x, dtype(0))
    fresh = relu(x)
    assert fresh.dtype == dtype and fresh.shape == shape
    np.testing.assert_array_equal(fresh, expected)
    assert np.isnan(fresh.flat[0]) and fresh.flat[1] == 0 and fresh.flat[2] == np.inf
    y = x.copy()
    assert relu_into(y) is y
    np.testing.assert_array_equal(y, expected)


def test_relu_leaves_its_input_alone() -> None:
    x = np.random.default_rng(1).standard_normal((8, 1024)).astype(np.float32)
    before = x.copy()
    relu(x)
    np.testing.assert_array_equal(x, before)


def test_zero_pages_are_read_only_zeros_and_fall_back_when_too_big(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.ones((16, 512), np.float32)
    zeros = zeros_like(x)
    assert zeros is not None and zeros.shape == x.shape and zeros.dtype == np.float32
    assert not zeros.flags.writeable and not zeros.any()
    assert zeros_like(np.ones(8, np.int32)) is None
    monkeypatch.setattr(_relu, "_ZERO_BYTES", 1024)
    assert zeros_like(x) is None
    y = -x
    np.testing.assert_array_equal(relu_into(y), np.zeros_like(x))
