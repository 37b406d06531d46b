"""Resize and Upsample (resize.py) against onnx's reference evaluator over every mode, nearest_mode and
coordinate transformation, scales and sizes, antialias, axes and keep_aspect_ratio_policy; the legacy
Resize-10/Upsample rounding against values onnxruntime produces."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument
from onnxforge.runtime.kernels import resize as resize_kernels

Inputs = list[tuple[str, np.ndarray | None]]


def build(op: str, inputs: Inputs, attrs: dict[str, Any] | None = None, opset: int = 19) -> onnx.ModelProto:
    names = [name if value is not None else "" for name, value in inputs]
    while names and not names[-1]:
        names.pop()
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), None)
        for name, value in inputs
        if value is not None
    ]
    proto = helper.make_model(
        helper.make_graph([node], "g", graph_inputs, [helper.make_value_info("y", onnx.TypeProto())]),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    proto.ir_version = 9
    return proto


def run(proto: onnx.ModelProto, inputs: Inputs) -> np.ndarray:
    return InferenceSession(proto.SerializeToString()).run(None, {n: v for n, v in inputs if v is not None})[0]


def reference(proto: onnx.ModelProto, inputs: Inputs) -> np.ndarray:
    return np.asarray(ReferenceEvaluator(proto).run(None, {n: v for n, v in inputs if v is not None})[0])


COORDINATE_MODES = [
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


@st.composite
def resize_cases(draw: st.DrawFn) -> dict[str, Any]:
    rank = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank))
    mode = draw(st.sampled_from(["nearest", "linear", "cubic"]))
    attrs: dict[str, Any] = {"mode": mode, "coordinate_transformation_mode": draw(st.sampled_from(COORDINATE_MODES))}
    if mode == "nearest":
        attrs["nearest_mode"] = draw(st.sampled_from(NEAREST_MODES))
    else:
        attrs["antialias"] = draw(st.integers(0, 1))
    if mode == "cubic":
        attrs["cubic_coeff_a"] = draw(st.sampled_from([-0.75, -0.5]))
        attrs["exclude_outside"] = draw(st.integers(0, 1))
    axes = sorted(draw(st.lists(st.integers(0, rank - 1), unique=True, min_size=1))) if draw(st.booleans()) else None
    if axes is not None:
        attrs["axes"] = axes
    resized = axes if axes is not None else list(range(rank))
    inputs: dict[str, Any] = {
        "x": np.asarray(
            draw(st.lists(st.integers(-50, 50), min_size=math.prod(shape), max_size=math.prod(shape))), np.float32
        ).reshape(shape)
    }
    if draw(st.booleans()):
        scales = [draw(st.sampled_from([0.25, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 2.5, 3.0])) for _ in resized]
        inputs["scales"] = np.array(scales, np.float32)
        out = [math.floor(s * shape[a]) for s, a in zip(scales, resized)]
    else:
        out = [draw(st.integers(1, 9)) for _ in resized]
        inputs["sizes"] = np.array(out, np.int64)
        attrs["keep_aspect_ratio_policy"] = draw(st.sampled_from(["stretch", "not_larger", "not_smaller"]))
    if attrs["coordinate_transformation_mode"] == "tf_crop_and_resize":
        starts = [draw(st.sampled_from([0.0, 0.2, 0.4])) for _ in resized]
        ends = [draw(st.sampled_from([0.6, 0.8, 1.0, 1.2])) for _ in resized]
        inputs["roi"] = np.array(starts + ends, np.float32)
        attrs["extrapolation_value"] = draw(st.sampled_from([0.0, -7.0]))
    # pytorch_half_pixel maps a length-1 output to 0 (spec, onnxruntime); the reference tests the
    # fractional length scale * length_original instead, and uses -0.5. Checked separately below.
    if attrs["coordinate_transformation_mode"] == "pytorch_half_pixel" and (
        1 in out or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch"
    ):
        attrs["coordinate_transformation_mode"] = "half_pixel"
    return {"inputs": inputs, "attrs": attrs}


def reference_misaligns(case: dict[str, Any]) -> bool:
    """Whether the reference would misplace its kernel window: it places neighbours by whether
    ``x + ceil(n/2)`` is an integer, which rounding makes true when ``x`` is a hair off one (1e-16 from
    half_pixel_symmetric's offset, say), while its weights follow ``x`` itself."""
    values, attrs = case["inputs"], case["attrs"]
    shape = values["x"].shape
    axes = attrs.get("axes", list(range(len(shape))))
    scales = values.get("scales")
    sizes = values.get("sizes")
    out_shape, out_scales = resize_kernels._output_geometry(
        shape,
        axes,
        None if scales is None else scales.tolist(),
        None if sizes is None else sizes.tolist(),
        attrs.get("keep_aspect_ratio_policy", "stretch"),
    )
    roi = (np.float32(0), np.float32(1))
    for axis in axes:
        x, _ = resize_kernels._source_coordinates(
            attrs["coordinate_transformation_mode"], out_shape[axis], shape[axis], out_scales[axis], roi
        )
        if any(np.any((np.floor(x + pad) == x + pad) != (np.floor(x) == x)) for pad in range(1, 17)):
            return True
    return False


@settings(max_examples=60, deadline=None)
@given(resize_cases(), st.sampled_from([np.float32, np.float64, np.uint8, np.int32]))
def test_resize_matches_reference(case: dict[str, Any], dtype: Any) -> None:
    assume(not reference_misaligns(case))
    values = case["inputs"]
    x = values["x"] + (60 if np.dtype(dtype).kind == "u" else 0)
    inputs: Inputs = [
        ("x", x.astype(dtype)),
        ("roi", values.get("roi")),
        ("scales", values.get("scales")),
        ("sizes", values.get("sizes")),
    ]
    proto = build("Resize", inputs, case["attrs"])
    got, want = run(proto, inputs), reference(proto, inputs)
    assert got.dtype == want.dtype and got.shape == want.shape
    if np.dtype(dtype).kind == "f":
        # the reference computes cubic weights in float32 (cubic_coeff_a arrives as np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(x).max())))
    else:  # rounding of float32 vs float64 intermediates may flip an exact .5
        assert np.abs(got.astype(np.int64) - want.astype(np.int64)).max(initial=0) <= 1


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(NEAREST_MODES), st.sampled_from(COORDINATE_MODES[:-1]), st.sampled_from([0.5, 1.5, 2.0, 3.0]))
def test_nearest_keeps_exact_values_of_any_dtype(nearest_mode: str, coordinate: str, scale: float) -> None:
    x = np.array([[2**62 + 1, -(2**62) - 3, 7]], dtype=np.int64)
    attrs = {"mode": "nearest", "nearest_mode": nearest_mode, "coordinate_transformation_mode": coordinate}
    inputs: Inputs = [("x", x), ("roi", None), ("scales", np.array([1.0, scale], np.float32))]
    got = run(build("Resize", inputs, attrs), inputs)
    assert got.dtype == np.int64 and set(got.ravel().tolist()) <= set(x.ravel().tolist())
    strings = np.array([["a", "b", "c"]], dtype=object)
    proto = build(
        "Resize",
        [("x", np.zeros((1, 3), np.float32)), ("roi", None), ("scales", np.array([1.0, scale], np.float32))],
        attrs,
    )
    proto.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.STRING
    out = InferenceSession(proto.SerializeToString()).run(
        None, {"x": strings, "scales": np.array([1.0, scale], np.float32)}
    )[0]
    picked = [x[0].tolist().index(v) for v in got[0].tolist()]  # x's values are distinct
    assert out.tolist() == [[strings[0, i] for i in picked]]


def test_pytorch_half_pixel_length_one_output_samples_position_zero() -> None:
    x = np.arange(1, 6, dtype=np.float32).reshape(1, 5)
    for mode in ("linear", "cubic"):
        inputs: Inputs = [("x", x), ("roi", None), ("scales", None), ("sizes", np.array([1, 1], np.int64))]
        out = run(
            build("Resize", inputs, {"mode": mode, "coordinate_transformation_mode": "pytorch_half_pixel"}), inputs
        )
        assert out.tolist() == [[1.0]]


@pytest.mark.parametrize(
    ("scale", "mode", "expected"),
    [  # values onnxruntime's Resize-10 produces on [1..10]
        (0.3, "nearest", [1, 5, 8]),
        (0.6, "nearest", [1, 3, 5, 6, 8, 10]),
        (1.5, "nearest", [1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9, 9, 10]),
        (0.3, "linear", [1, 13 / 3, 23 / 3]),
        (0.5, "linear", [1, 3, 5, 7, 9]),
    ],
)
def test_resize_10_uses_legacy_asymmetric_rules(scale: float, mode: str, expected: list[float]) -> None:
    x = np.arange(1, 11, dtype=np.float32).reshape(1, 10)
    inputs: Inputs = [("x", x), ("scales", np.array([1.0, scale], np.float32))]
    out = run(build("Resize", inputs, {"mode": mode}, opset=10), inputs)
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)


@pytest.mark.parametrize("opset", [7, 9])
def test_upsample(opset: int) -> None:
    x = np.arange(1, 5, dtype=np.float32).reshape(1, 4)
    scales = [1.0, 2.5]
    for mode, expected in (
        ("nearest", [1, 1, 1, 2, 2, 3, 3, 3, 4, 4]),
        ("linear", [1, 1.4, 1.8, 2.2, 2.6, 3, 3.4, 3.8, 4, 4]),
    ):
        if opset == 7:
            inputs: Inputs = [("x", x)]
            proto = build("Upsample", inputs, {"mode": mode, "scales": scales}, opset=7)
        else:
            inputs = [("x", x), ("scales", np.array(scales, np.float32))]
            proto = build("Upsample", inputs, {"mode": mode}, opset=9)
        np.testing.assert_allclose(run(proto, inputs)[0], expected, rtol=1e-6)
    inputs = [("x", x), ("scales", np.array([1.0, 2.0], np.float32))]
    proto = build("Upsample", inputs, {"mode": "nearest"}, opset=9)
    np.testing.assert_array_equal(run(proto, inputs), reference(proto, inputs))


@pytest.mark.parametrize(
    ("inputs", "attrs", "message"),
    [
        ([("scales", np.array([1.0, 2.0], np.float32)), ("sizes", np.array([1, 2], np.int64))], {}, "exactly one"),
        ([("scales", np.array([2.0], np.float32))], {}, "1 values for 2 axes"),
        ([("scales", np.array([1.0, 2.0**40], np.float32))], {}, "requested shape"),
        ([("scales", np.array([1.0, 2.0], np.float32))], {"mode": "area"}, "mode must be"),
    ],
)
def test_resize_errors(inputs: Inputs, attrs: dict[str, Any], message: str) -> None:
    x = np.ones((2, 3), np.float32)
    provided = dict(inputs)
    full: Inputs = [("x", x), ("roi", None), ("scales", provided.get("scales")), ("sizes", provided.get("sizes"))]
    with pytest.raises(InvalidArgument, match=message):
        run(build("Resize", full, attrs), full)
