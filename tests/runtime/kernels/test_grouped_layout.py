"""Grouped pointwise convs into and out of channels-last (kernels/_grouped_layout.py)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge import InvalidArgument
from onnxforge.runtime.kernels import _grouped_layout
from onnxforge.runtime.kernels._grouped_layout import grouped_pointwise_from_nhwc, grouped_pointwise_to_nhwc

RNG = np.random.default_rng(5)


def _grouped(x: np.ndarray, w: np.ndarray, b: np.ndarray, group: int) -> np.ndarray:
    """NCHW grouped 1x1 conv, group by group."""
    m, cg = w.shape[:2]
    mg = m // group
    parts = [
        np.einsum("mc,nchw->nmhw", w[k * mg : (k + 1) * mg, :, 0, 0], x[:, k * cg : (k + 1) * cg]) for k in range(group)
    ]
    return np.concatenate(parts, axis=1) + b[:, None, None]


def _shuffled(y: np.ndarray, groups: int) -> np.ndarray:
    n, c, h, w = y.shape
    return y.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


def _relu(y: np.ndarray) -> np.ndarray:
    return np.maximum(y, 0, out=y)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("group", [1, 3, 4])
@pytest.mark.parametrize("activation", [None, _relu])
def test_to_nhwc_is_the_grouped_conv_optionally_shuffled(shuffle: bool, group: int, activation: object) -> None:
    m, c = 12, 24
    w = RNG.standard_normal((m, c // group, 1, 1)).astype(np.float32)
    b = RNG.standard_normal(m).astype(np.float32)
    x = RNG.standard_normal((2, c, 5, 7)).astype(np.float32)
    want = _grouped(x, w, b, group)
    if shuffle:
        want = _shuffled(want, group)
    if activation is not None:
        want = np.maximum(want, 0)  # after the bias
    got = grouped_pointwise_to_nhwc(w, b, activation, group, shuffle)(x)  # type: ignore[arg-type]
    assert got.shape == (2, 5, 7, m) and got.dtype == np.float32
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("group", [1, 2, 4])
@pytest.mark.parametrize("activation", [None, _relu])
def test_from_nhwc_is_the_grouped_conv_written_nchw(group: int, activation: object) -> None:
    m, c = 16, 12
    w = RNG.standard_normal((m, c // group, 1, 1)).astype(np.float32)
    b = RNG.standard_normal(m).astype(np.float32)
    x = RNG.standard_normal((3, c, 4, 6)).astype(np.float32)
    want = _grouped(x, w, b, group)
    if activation is not None:
        want = np.maximum(want, 0)
    got = grouped_pointwise_from_nhwc(w, b, activation, group)(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))  # type: ignore[arg-type]
    assert got.shape == (3, m, 4, 6) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("to_nhwc", [True, False])
def test_groups_are_split_across_the_threads(to_nhwc: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    m, c, group = 16, 16, 4
    w = RNG.standard_normal((m, c // group, 1, 1)).astype(np.float32)
    b = np.zeros(m, np.float32)
    x = RNG.standard_normal((1, c, 6, 6)).astype(np.float32)
    want = _grouped(x, w, b, group)
    split_into: list[int] = []
    real = _grouped_layout.parallel

    def spy(tasks: list) -> None:
        split_into.append(len(tasks))
        real(tasks)

    monkeypatch.setattr(_grouped_layout, "parallel", spy)
    monkeypatch.setattr(_grouped_layout, "workers", lambda: 2)
    monkeypatch.setattr(_grouped_layout, "PARALLEL_MIN_MACS", 0)
    if to_nhwc:
        got = grouped_pointwise_to_nhwc(w, b, None, group, shuffle=False)(x).transpose(0, 3, 1, 2)
    else:
        got = grouped_pointwise_from_nhwc(w, b, None, group)(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert split_into == [2]


def test_a_wrong_channel_count_is_named() -> None:
    w = np.ones((8, 2, 1, 1), np.float32)
    with pytest.raises(InvalidArgument, match=r"expected a 4-D input with 8 channels, got shape \[1, 6, 3, 3\]"):
        grouped_pointwise_to_nhwc(w, None, None, 4, shuffle=True)(np.ones((1, 6, 3, 3), np.float32))
    with pytest.raises(InvalidArgument, match=r"expected a 4-D input with 8 channels, got shape \[1, 3, 3, 6\]"):
        grouped_pointwise_from_nhwc(w, None, None, 4)(np.ones((1, 3, 3, 6), np.float32))
