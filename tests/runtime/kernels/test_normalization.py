"""Normalizations against onnx's reference evaluator (and onnxruntime for LRN) on generated shapes.

float16 inputs are checked against the reference run in float32, so the comparison measures our
rounding. The reference's LRN sums the wrong channels and its L1 LpNormalization forgets the absolute
value; those are checked against onnxruntime and numpy's statement of the formula.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxforge.runtime.kernels import normalization
from tests.runtime.kernels.test_conv import (
    assert_matches,
    feeds_of,
    needs_ort,
    node_model,
    random,
    run_ort,
    run_ours,
    run_reference,
    seeds,
)

FLOATS = [np.float32, np.float64, np.float16]
shapes = st.lists(st.integers(1, 5), min_size=2, max_size=5).map(tuple)


def widened(inputs: list[tuple[str, np.ndarray | None, bool]]) -> list[tuple[str, np.ndarray | None, bool]]:
    return [(n, v.astype(np.float32) if v is not None and v.dtype == np.float16 else v, c) for n, v, c in inputs]


def check(
    op: str,
    inputs: list[tuple[str, np.ndarray | None, bool]],
    dtype: Any,
    outputs: int = 1,
    opset: int = 22,
    **attrs: Any,
) -> list[Any]:
    """Run ``op`` ourselves and through the reference (in float32 for halves); compare every output."""
    got = run_ours(node_model(op, inputs, outputs, opset=opset, **attrs), feeds_of(inputs))
    wide = widened(inputs)
    want = run_reference(node_model(op, wide, outputs, opset=opset, **attrs), feeds_of(wide))
    assert len(got) == outputs
    for have, expected in zip(got, want):
        assert_matches(have, expected, dtype)
    return got


@settings(max_examples=25, deadline=None)
@given(shapes, st.sampled_from(FLOATS), st.sampled_from([9, 14, 15]), st.booleans(), seeds)
def test_batchnorm_inference(shape: tuple[int, ...], dtype: Any, opset: int, constant: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = shape[1]
    params = [
        random(rng, (c,), dtype),
        random(rng, (c,), dtype),
        random(rng, (c,), dtype),
        rng.uniform(0.1, 2, c).astype(dtype),
    ]
    x = random(rng, shape, dtype)
    inputs = [("X", x, False)] + [(name, value, constant) for name, value in zip(["scale", "B", "mean", "var"], params)]
    epsilon = 2.0**-12
    # The reference evaluator runs opset 9 as training whenever momentum has its default; state the formula.
    (got,) = run_ours(node_model("BatchNormalization", inputs, opset=opset, epsilon=epsilon), feeds_of(inputs))
    s, b, m, v = (p.astype(np.float64).reshape(c, *(1,) * (len(shape) - 2)) for p in params)
    assert_matches(got, (x.astype(np.float64) - m) / np.sqrt(v + epsilon) * s + b, dtype)
    if opset >= 14:
        check("BatchNormalization", inputs, dtype, opset=opset, epsilon=epsilon)


@settings(max_examples=15, deadline=None)
@given(shapes, st.sampled_from([np.float32, np.float64]), st.sampled_from([14, 15]), seeds)
def test_batchnorm_training_mode(shape: tuple[int, ...], dtype: Any, opset: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = shape[1]
    inputs = [
        ("X", random(rng, shape, dtype), False),
        ("scale", random(rng, (c,), dtype), False),
        ("B", random(rng, (c,), dtype), False),
        ("mean", random(rng, (c,), dtype), False),
        ("var", rng.uniform(0.1, 2, c).astype(dtype), False),
    ]
    check("BatchNormalization", inputs, dtype, outputs=3, opset=opset, training_mode=1, momentum=0.8)


def test_batchnorm_per_activation_parameters_at_opset_7() -> None:
    """spatial=0: parameters of shape (C, D1, ...), one per activation (the reference mis-runs opset 7)."""
    rng = np.random.default_rng(0)
    x = random(rng, (2, 3, 4))
    scale, bias, mean = random(rng, (3, 4)), random(rng, (3, 4)), random(rng, (3, 4))
    var = rng.uniform(0.5, 1.5, (3, 4)).astype(np.float32)
    inputs = [("X", x, False), ("s", scale, False), ("b", bias, False), ("m", mean, False), ("v", var, False)]
    (got,) = run_ours(node_model("BatchNormalization", inputs, opset=7, spatial=0), feeds_of(inputs))
    assert_matches(got, (x - mean) / np.sqrt(var + 1e-5) * scale + bias, np.float32)
    channel = [(name, value[:, 0].copy() if value.ndim == 2 else value, True) for name, value, _ in inputs]
    (got,) = run_ours(node_model("BatchNormalization", channel, opset=7), {})
    s, b, m, v = (value[:, None] for _, value, _ in channel[1:])
    assert_matches(got, (x - m) / np.sqrt(v + 1e-5) * s + b, np.float32)


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=3, max_size=5).map(tuple),
    st.sampled_from(FLOATS),
    st.floats(1e-6, 1e-2),
    seeds,
)
def test_instance_normalization(shape: tuple[int, ...], dtype: Any, epsilon: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = shape[1]
    inputs = [
        ("X", random(rng, shape, dtype), False),
        ("s", random(rng, (c,), dtype), True),
        ("b", random(rng, (c,), dtype), False),
    ]
    check("InstanceNormalization", inputs, dtype, epsilon=epsilon)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
    st.sampled_from(FLOATS),
    st.data(),
    st.booleans(),
    seeds,
)
def test_layer_normalization(shape: tuple[int, ...], dtype: Any, data: st.DataObject, bias: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    outputs = data.draw(st.integers(1, 3)) if dtype == np.float32 else 1
    normalized = shape[axis:]
    inputs = [
        ("X", random(rng, shape, dtype), False),
        ("Scale", random(rng, normalized, dtype), False),
        ("B", random(rng, normalized, dtype) if bias else None, False),
    ]
    check("LayerNormalization", inputs, dtype, outputs=outputs, opset=17, axis=axis, epsilon=1e-4)


def test_layer_normalization_statistics_are_float32_for_halves() -> None:
    rng = np.random.default_rng(0)
    x = random(rng, (2, 3), np.float16)
    inputs = [("X", x, False), ("Scale", random(rng, (3,), np.float16), False)]
    model = node_model("LayerNormalization", inputs, 3, opset=17, output_dtypes=[np.float16, np.float32, np.float32])
    y, mean, inv_std = run_ours(model, feeds_of(inputs))
    assert (y.dtype, mean.dtype, inv_std.dtype) == (np.float16, np.float32, np.float32)
    assert mean.shape == inv_std.shape == (2, 1)
    assert_matches(mean, x.astype(np.float32).mean(axis=1, keepdims=True), np.float32)


@settings(max_examples=20, deadline=None)
@given(
    st.integers(1, 2),
    st.sampled_from([(4, 2), (6, 3), (3, 1), (4, 4)]),
    st.lists(st.integers(1, 4), max_size=2),
    st.sampled_from([18, 21]),
    st.sampled_from(FLOATS),
    seeds,
)
def test_group_normalization(
    n: int, channels_groups: tuple[int, int], spatial: list[int], opset: int, dtype: Any, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    c, groups = channels_groups
    x = random(rng, (n, c, *spatial), dtype)
    size = c if opset >= 21 else groups
    scale, bias = random(rng, (size,), dtype), random(rng, (size,), dtype)
    inputs = [("X", x, False), ("scale", scale, True), ("bias", bias, False)]
    epsilon = 2.0**-10  # exact in the float32 attribute, so float64 cases can be compared tightly
    (got,) = run_ours(
        node_model("GroupNormalization", inputs, opset=opset, num_groups=groups, epsilon=epsilon), feeds_of(inputs)
    )
    wide = x.astype(np.float64).reshape(n, groups, -1)
    normalized = (wide - wide.mean(axis=2, keepdims=True)) / np.sqrt(wide.var(axis=2, keepdims=True) + epsilon)
    if opset >= 21:
        normalized = normalized.reshape(n, c, -1) * scale[:, None] + bias[:, None]
    else:
        normalized = normalized * scale[:, None] + bias[:, None]
    assert_matches(got, normalized.reshape(x.shape), dtype)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple), st.sampled_from(FLOATS), st.data(), seeds)
def test_rms_normalization(shape: tuple[int, ...], dtype: Any, data: st.DataObject, seed: int) -> None:
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    inputs = [("X", random(rng, shape, dtype), False), ("scale", random(rng, shape[axis:], dtype), False)]
    check("RMSNormalization", inputs, dtype, opset=23, axis=axis, epsilon=1e-4)


@needs_ort
@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.integers(1, 6), min_size=4, max_size=4).map(tuple),
    st.sampled_from([1, 3, 5]),
    st.floats(1e-4, 1e-2),
    st.sampled_from([0.5, 0.75, 1.0]),
    st.floats(0.5, 2.0),
    seeds,
)
def test_lrn_matches_onnxruntime(
    shape: tuple[int, ...], size: int, alpha: float, beta: float, bias: float, seed: int
) -> None:
    x = random(np.random.default_rng(seed), shape) * 3
    model = node_model("LRN", [("X", x, False)], opset=13, size=size, alpha=alpha, beta=beta, bias=bias)
    assert_matches(run_ours(model, {"X": x})[0], run_ort(model, {"X": x})[0], np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_lrn_formula(dtype: Any) -> None:
    x = random(np.random.default_rng(3), (2, 5, 3, 2), dtype)
    (got,) = run_ours(
        node_model("LRN", [("X", x, False)], opset=13, size=3, alpha=2.0**-7, beta=0.625, bias=1.5), {"X": x}
    )
    wide = x.astype(np.float64)
    padded = np.pad(wide**2, ((0, 0), (1, 1), (0, 0), (0, 0)))
    window = padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]
    assert_matches(got, wide / (1.5 + 2.0**-7 / 3 * window) ** 0.625, dtype)


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
    st.sampled_from(FLOATS),
    st.sampled_from([1, 2]),
    st.data(),
    seeds,
)
def test_lp_normalization(shape: tuple[int, ...], dtype: Any, p: int, data: st.DataObject, seed: int) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = random(np.random.default_rng(seed), shape, dtype)
    x.reshape(-1)[0] = 0  # a lone zero keeps its slice's norm positive unless the slice is just that zero
    (got,) = run_ours(node_model("LpNormalization", [("X", x, False)], opset=22, axis=axis, p=p), {"X": x})
    wide = x.astype(np.float64)
    norm = np.sum(np.abs(wide) ** p, axis=axis, keepdims=True) ** (1 / p)
    assert_matches(got, np.where(norm == 0, 0, wide / np.where(norm == 0, 1, norm)), dtype)


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.integers(1, 4), min_size=4, max_size=4).map(tuple),
    st.sampled_from([[0, 2, 3], [1], [0, 1, 2, 3], [2, 3]]),
    st.sampled_from([9, 13]),
    st.sampled_from(FLOATS),
    seeds,
)
def test_mean_variance_normalization(
    shape: tuple[int, ...], axes: list[int], opset: int, dtype: Any, seed: int
) -> None:
    x = random(np.random.default_rng(seed), shape, dtype) + 0.5
    if dtype == np.float32:
        (got,) = run_ours(node_model("MeanVarianceNormalization", [("X", x, False)], opset=opset, axes=axes), {"X": x})
    else:
        # onnx's load-time inference of the function body (a float Epsilon) rejects other dtypes; call the kernel.
        got = normalization.MeanVarianceNormalization(x, axes=axes)
    wide = x.astype(np.float64)
    centred = wide - wide.mean(axis=tuple(axes), keepdims=True)
    expected = centred / (np.sqrt(np.mean(centred**2, axis=tuple(axes), keepdims=True)) + 1e-9)
    # A single-element reduction has zero variance: 0 / 1e-9, exactly 0 here and in the spec.
    assert_matches(got, expected, dtype, tolerance=1e-2 if dtype == np.float16 else 1e-4)
