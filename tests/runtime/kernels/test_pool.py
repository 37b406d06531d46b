"""Pools against onnxruntime and onnx's reference evaluator on generated geometries.

onnxruntime is the main oracle: the reference evaluator's MaxPool mis-sizes SAME_LOWER with strides,
its ceil_mode shifts windows, and its LpPool rescales averages instead of summing. The reference checks
the cases it gets right (unit strides and dilations, explicit pads without ceil_mode) and the ops
onnxruntime lacks in some dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from onnxforge import InvalidArgument
from tests.runtime.kernels.test_conv import (
    assert_matches,
    needs_ort,
    node_model,
    random,
    run_ort,
    run_ours,
    run_reference,
    seeds,
)


@st.composite
def pool_cases(draw: st.DrawFn, dilations: bool = True, rank: int | None = None) -> dict[str, Any]:
    rank = rank or draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(rank)]
    strides = [draw(st.integers(1, 3)) for _ in range(rank)]
    dil = [draw(st.integers(1, 2)) if dilations else 1 for _ in range(rank)]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad.startswith("SAME"):
        # onnxruntime rejects SAME with a kernel narrower than the stride (a negative pad); we clamp it to 0.
        strides = [min(s, k) for s, k in zip(strides, kernel)]
    pads = [draw(st.integers(0, k - 1)) for k in kernel * 2] if auto_pad == "NOTSET" else [0] * (2 * rank)
    # Inputs at least one dilated window wide, so no window lies wholly in the padding.
    spatial = [draw(st.integers(d * (k - 1) + 1, d * (k - 1) + (5 if rank < 3 else 3))) for k, d in zip(kernel, dil)]
    return {
        "batch": draw(st.integers(1, 2)),
        "channels": draw(st.integers(1, 3)),
        "kernel": kernel,
        "strides": strides,
        "dilations": dil,
        "auto_pad": auto_pad,
        "pads": pads,
        "ceil_mode": draw(st.integers(0, 1)) if auto_pad in ("NOTSET", "VALID") else 0,
        "spatial": spatial,
        "seed": draw(seeds),
    }


def pool_attributes(case: dict[str, Any], dilations: bool = True, ceil_mode: bool = True) -> dict[str, Any]:
    attrs: dict[str, Any] = {"kernel_shape": case["kernel"], "strides": case["strides"]}
    if dilations and any(d != 1 for d in case["dilations"]):
        attrs["dilations"] = case["dilations"]
    if case["auto_pad"] == "NOTSET":
        attrs["pads"] = case["pads"]
    else:
        attrs["auto_pad"] = case["auto_pad"]
    if ceil_mode and case["ceil_mode"]:
        attrs["ceil_mode"] = 1
    return attrs


@needs_ort
@settings(max_examples=30, deadline=None)
@given(
    pool_cases(),
    st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.uint8]),
    st.booleans(),
    st.integers(0, 1),
)
def test_maxpool_matches_onnxruntime(case: dict[str, Any], dtype: Any, indices: bool, storage_order: int) -> None:
    rng = np.random.default_rng(case["seed"])
    shape = (case["batch"], case["channels"], *case["spatial"])
    if np.dtype(dtype).kind in "iu":
        # Distinct values, so the first-maximum rule of Indices is not exercised by ties here.
        x = rng.permutation(np.prod(shape)).reshape(shape) % 120
        x = x.astype(dtype)
        indices = False
    else:
        x = random(rng, shape, dtype)
    attrs = pool_attributes(case)
    if indices:
        attrs["storage_order"] = storage_order
    model = node_model(
        "MaxPool",
        [("X", x, False)],
        2 if indices else 1,
        opset=12,
        output_dtypes=[dtype, np.int64][: 2 if indices else 1],
        **attrs,
    )
    got = run_ours(model, {"X": x})
    want = run_ort(model, {"X": x})
    assert_matches(got[0], want[0], dtype, tolerance=0)
    if indices:
        assert got[1].dtype == np.int64
        np.testing.assert_array_equal(got[1], want[1])


@settings(max_examples=20, deadline=None)
@given(pool_cases(dilations=False, rank=2), st.sampled_from([np.float32, np.float64]))
def test_maxpool_matches_reference_in_2d(case: dict[str, Any], dtype: Any) -> None:
    """The reference's MaxPool is only sound for 2-D, equal explicit pads and unit strides."""
    pads = [min(case["pads"][0], min(case["kernel"]) - 1)] * 4
    case = {**case, "strides": [1, 1], "ceil_mode": 0, "pads": pads, "auto_pad": "NOTSET"}
    x = random(np.random.default_rng(case["seed"]), (case["batch"], case["channels"], *case["spatial"]), dtype)
    model = node_model("MaxPool", [("X", x, False)], opset=22, **pool_attributes(case))
    assert_matches(run_ours(model, {"X": x})[0], run_reference(model, {"X": x})[0], dtype, tolerance=0)


@needs_ort
@settings(max_examples=30, deadline=None)
@given(pool_cases(), st.integers(0, 1), st.sampled_from([11, 19, 22]))
def test_averagepool_matches_onnxruntime(case: dict[str, Any], count_include_pad: int, opset: int) -> None:
    dtype = np.float32  # onnxruntime's CPU AveragePool is float32-only; the reference covers the others
    x = random(np.random.default_rng(case["seed"]), (case["batch"], case["channels"], *case["spatial"]), dtype)
    attrs = pool_attributes(case, dilations=opset >= 19)
    model = node_model("AveragePool", [("X", x, False)], opset=opset, count_include_pad=count_include_pad, **attrs)
    assert_matches(run_ours(model, {"X": x})[0], run_ort(model, {"X": x})[0], dtype)


@settings(max_examples=20, deadline=None)
@given(pool_cases(), st.sampled_from([np.float32, np.float64, np.float16]), st.integers(0, 1))
def test_averagepool_matches_reference_without_ceil_mode(
    case: dict[str, Any], dtype: Any, count_include_pad: int
) -> None:
    x = random(np.random.default_rng(case["seed"]), (case["batch"], case["channels"], *case["spatial"]), dtype)
    if case["auto_pad"] != "NOTSET":
        # The reference sizes SAME pads and VALID outputs from the undilated kernel.
        case = {**case, "dilations": [1] * len(case["kernel"])}
    attrs = pool_attributes(case, ceil_mode=False)
    model = node_model("AveragePool", [("X", x, False)], opset=19, count_include_pad=count_include_pad, **attrs)
    assert_matches(run_ours(model, {"X": x})[0], run_reference(model, {"X": x})[0], dtype)


@needs_ort
@settings(max_examples=25, deadline=None)
@given(pool_cases(), st.sampled_from([1, 2, 3]), st.sampled_from([11, 18]))
def test_lppool_matches_onnxruntime(case: dict[str, Any], p: int, opset: int) -> None:
    x = random(np.random.default_rng(case["seed"]), (case["batch"], case["channels"], *case["spatial"]), np.float32)
    attrs = pool_attributes(case, dilations=opset >= 18, ceil_mode=opset >= 18)
    model = node_model("LpPool", [("X", x, False)], opset=opset, p=p, **attrs)
    assert_matches(run_ours(model, {"X": x})[0], run_ort(model, {"X": x})[0], np.float32)


@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from(["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"]),
    st.lists(st.integers(1, 4), min_size=3, max_size=5).map(tuple),
    st.sampled_from([np.float32, np.float64, np.float16]),
    st.sampled_from([1, 2, 3]),
    st.sampled_from([2, 22]),
    seeds,
)
def test_global_pools(op: str, shape: tuple[int, ...], dtype: Any, p: int, opset: int, seed: int) -> None:
    # The reference lacks GlobalLpPool and drops an axis of rank-3 GlobalMaxPool; numpy states the math.
    x = random(np.random.default_rng(seed), shape, dtype)
    axes = tuple(range(2, len(shape)))
    wide = x.astype(np.float64)
    expected = {
        "GlobalAveragePool": lambda: wide.mean(axis=axes, keepdims=True),
        "GlobalMaxPool": lambda: wide.max(axis=axes, keepdims=True),
        "GlobalLpPool": lambda: (np.abs(wide) ** p).sum(axis=axes, keepdims=True) ** (1 / p),
    }[op]()
    model = node_model(op, [("X", x, False)], opset=opset, **({"p": p} if op == "GlobalLpPool" else {}))
    assert_matches(run_ours(model, {"X": x})[0], expected, dtype)


@pytest.mark.parametrize(
    "shape",
    [(1, 1000, 13, 13), (8, 512, 7, 7), (2, 3, 5), (1, 2, 4, 6, 5), (1, 2, 300, 300), (0, 4, 3, 3), (2, 0, 3, 3)],
)
def test_global_average_pool_float32_matches_the_float64_mean(shape: tuple[int, ...]) -> None:
    """The float32 matrix-vector path (up to 65,536 pixels; 300x300 takes np.mean) and empty batches."""
    x = random(np.random.default_rng(7), shape, np.float32) + 3.0  # an offset makes the sums' rounding show
    got = run_ours(node_model("GlobalAveragePool", [("X", x, False)], opset=22), {"X": x})[0]
    expected = x.astype(np.float64).mean(axis=tuple(range(2, len(shape))), keepdims=True)
    assert got.dtype == np.float32 and got.shape == expected.shape == (*shape[:2], *(1,) * (len(shape) - 2))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)


@needs_ort
@settings(max_examples=20, deadline=None)
@given(pool_cases(dilations=False), st.booleans())
def test_maxunpool_inverts_maxpool_like_onnxruntime(case: dict[str, Any], with_shape: bool) -> None:
    """MaxPool's (values, Indices) unpooled back, with and without the default shape as explicit output_shape.

    Where output_shape equals the default unpooled shape, onnxruntime's reading of the indices and onnx's agree.
    """
    case = {**case, "auto_pad": "NOTSET", "ceil_mode": 0}
    rng = np.random.default_rng(case["seed"])
    x = random(rng, (case["batch"], case["channels"], *case["spatial"]))
    attrs = pool_attributes(case)
    values, idx = run_ort(
        node_model("MaxPool", [("X", x, False)], 2, opset=12, output_dtypes=[np.float32, np.int64], **attrs), {"X": x}
    )
    attrs.pop("ceil_mode", None)
    # The default unpooled size can be smaller than MaxPool's input; indices beyond it are invalid.
    inferred = [
        (n - 1) * st + k - b - e
        for n, st, k, b, e in zip(
            values.shape[2:],
            case["strides"],
            case["kernel"],
            case["pads"][: len(case["kernel"])],
            case["pads"][len(case["kernel"]) :],
        )
    ]
    assume(all(d > 0 for d in inferred))  # ORT refuses a non-positive inferred dim outright
    assume(idx.max() < np.prod([*x.shape[:2], *inferred]))
    shape = np.array([*x.shape[:2], *inferred], dtype=np.int64) if with_shape else None
    inputs = [("X", values, False), ("I", idx, False), ("output_shape", shape, False)]
    model = node_model("MaxUnpool", inputs, opset=22, **attrs)
    feeds = {name: value for name, value, _ in inputs if value is not None}
    got = run_ours(model, feeds)[0]
    assert_matches(got, run_ort(model, feeds)[0], np.float32, tolerance=0)


def test_maxunpool_without_output_shape_matches_reference() -> None:
    x = np.array([[[[1, 2], [3, 4]]]], dtype=np.float32)
    idx = np.array([[[[0, 3], [10, 15]]]], dtype=np.int64)
    inputs = [("X", x, False), ("I", idx, False)]
    model = node_model("MaxUnpool", inputs, opset=11, kernel_shape=[2, 2], strides=[2, 2])
    feeds = {"X": x, "I": idx}
    assert_matches(run_ours(model, feeds)[0], run_reference(model, feeds)[0], np.float32, tolerance=0)


def test_maxunpool_output_shape_pads_the_default_unpooled_tensor() -> None:
    """Indices name positions of the default (4x4) shape; a larger output_shape zero-pads it at the end."""
    x = np.array([[[[5, 6], [7, 8]]]], dtype=np.float32)
    idx = np.array([[[[5, 7], [13, 15]]]], dtype=np.int64)
    shape = np.array([1, 1, 5, 6], dtype=np.int64)
    inputs = [("X", x, False), ("I", idx, False), ("output_shape", shape, False)]
    model = node_model("MaxUnpool", inputs, opset=11, kernel_shape=[2, 2], strides=[2, 2])
    feeds = {"X": x, "I": idx, "output_shape": shape}
    expected = np.zeros((1, 1, 5, 6), dtype=np.float32)
    expected[0, 0, [1, 1, 3, 3], [1, 3, 1, 3]] = [5, 6, 7, 8]
    got = run_ours(model, feeds)[0]
    assert_matches(got, expected, np.float32, tolerance=0)
    assert_matches(got, run_reference(model, feeds)[0], np.float32, tolerance=0)


def test_maxunpool_rejects_an_index_outside_a_smaller_output_shape() -> None:
    x = np.array([[[[5, 6], [7, 8]]]], dtype=np.float32)
    idx = np.array([[[[0, 3], [12, 15]]]], dtype=np.int64)  # 15 is (3, 3) of the default 4x4
    shape = np.array([1, 1, 3, 3], dtype=np.int64)
    inputs = [("X", x, False), ("I", idx, False), ("output_shape", shape, False)]
    model = node_model("MaxUnpool", inputs, opset=11, kernel_shape=[2, 2], strides=[2, 2])
    with pytest.raises(InvalidArgument, match=r"falls outside output_shape \[1, 1, 3, 3\]"):
        run_ours(model, {"X": x, "I": idx, "output_shape": shape})


@needs_ort
@settings(max_examples=20, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(3, 9),
    st.integers(3, 9),
    st.integers(1, 4),
    st.integers(1, 3),
    st.sampled_from([1.0, 0.5, 0.25]),
    seeds,
)
def test_maxroipool_matches_onnxruntime(
    channels: int, height: int, width: int, rois: int, pooled: int, scale: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = random(rng, (2, channels, height, width))
    corners = rng.uniform(0, max(height, width) / scale, size=(rois, 4))
    boxes = np.concatenate(
        [
            rng.integers(0, 2, size=(rois, 1)),
            np.minimum(corners[:, :2], corners[:, 2:]),
            np.maximum(corners[:, :2], corners[:, 2:]),
        ],
        axis=1,
    ).astype(np.float32)
    inputs = [("X", x, False), ("rois", boxes, False)]
    model = node_model("MaxRoiPool", inputs, opset=16, pooled_shape=[pooled, pooled + 1], spatial_scale=scale)
    feeds = {"X": x, "rois": boxes}
    assert_matches(run_ours(model, feeds)[0], run_ort(model, feeds)[0], np.float32, tolerance=0)


@pytest.mark.parametrize("opset", [7, 10, 11])
def test_old_pool_versions_run(opset: int) -> None:
    x = random(np.random.default_rng(0), (1, 2, 5, 5))
    for op in ("MaxPool", "AveragePool", "LpPool"):
        model = node_model(op, [("X", x, False)], opset=opset, kernel_shape=[2, 2], pads=[1, 1, 0, 0], strides=[2, 2])
        got = run_ours(model, {"X": x})[0]
        assert got.shape == (1, 2, 3, 3) and got.dtype == np.float32


@pytest.mark.parametrize(
    ("shape", "kernel", "strides", "pads"),
    [((1, 16, 8, 8), 2, 2, (0, 0, 0, 0)), ((2, 5, 9, 7), 3, 2, (1, 0, 1, 1)), ((1, 3, 6, 6), 3, 1, (1, 1, 1, 1))],
)
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_a_tiny_maxpool_takes_the_tap_wise_path_with_the_numbers_of_the_others(
    shape: tuple[int, ...],
    kernel: int,
    strides: int,
    pads: tuple[int, ...],
    dtype: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from onnxforge.runtime.kernels import max_pool  # noqa: PLC0415
    from onnxforge.runtime.kernels.pool import window_geometry  # noqa: PLC0415

    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 100).astype(dtype)
    if dtype == np.float32:
        x.flat[::7] = np.nan  # NaN wins its windows on every path
    k, s, d, begins, _, out = window_geometry(x, [kernel] * 2, [strides] * 2, None, list(pads), "NOTSET", 0)
    assert x.size < max_pool._TAP_WISE_MAX_SIZE
    tiny = max_pool._max_windows(x, k, s, d, begins, out)
    monkeypatch.setattr(max_pool, "_TAP_WISE_MAX_SIZE", 0)
    other = max_pool._max_windows(x, k, s, d, begins, out)
    assert tiny.dtype == other.dtype == dtype and tiny.shape == other.shape
    np.testing.assert_array_equal(tiny, other)
