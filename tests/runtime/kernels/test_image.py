"""Image and detection kernels (image.py, image_sampling.py, detection.py) against onnx's reference
evaluator: GridSample, AffineGrid, RoiAlign, NonMaxSuppression, ImageDecoder, CenterCropPad, Col2Im and
DeformConv over hypothesis-drawn shapes and attributes."""

from __future__ import annotations

import io
import sys
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument
from onnxforge._errors import NotImplemented
from onnxforge.runtime.kernels import image as image_kernels

Inputs = list[tuple[str, np.ndarray | None]]
FAST = settings(max_examples=15, deadline=None)


def build(op: str, inputs: Inputs, attrs: dict[str, Any] | None = None, opset: int = 22) -> onnx.ModelProto:
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
    proto.ir_version = 10
    return proto


def run(proto: onnx.ModelProto, inputs: Inputs) -> np.ndarray:
    return InferenceSession(proto.SerializeToString()).run(None, {n: v for n, v in inputs if v is not None})[0]


def reference(proto: onnx.ModelProto, inputs: Inputs) -> np.ndarray:
    return np.asarray(ReferenceEvaluator(proto).run(None, {n: v for n, v in inputs if v is not None})[0])


def check(op: str, inputs: Inputs, attrs: dict[str, Any], opset: int = 22, tol: float = 1e-5) -> np.ndarray:
    proto = build(op, inputs, attrs, opset)
    ours, expected = run(proto, inputs), reference(proto, inputs)
    assert ours.shape == expected.shape
    assert ours.dtype == expected.dtype
    np.testing.assert_allclose(ours, expected, rtol=tol, atol=tol)
    return ours


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    volumetric=st.booleans(),
    mode=st.sampled_from(["linear", "nearest", "cubic"]),
    padding_mode=st.sampled_from(["zeros", "border", "reflection"]),
    align_corners=st.integers(0, 1),
)
def test_grid_sample(seed: int, volumetric: bool, mode: str, padding_mode: str, align_corners: int) -> None:
    rng = np.random.default_rng(seed)
    rank = 3 if volumetric and mode != "cubic" else 2
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    sizes = [int(v) for v in rng.integers(2 if align_corners else 1, 6, rank)]
    out = [int(v) for v in rng.integers(1, 5, rank)]
    x = rng.standard_normal((n, c, *sizes)).astype(np.float32)
    grid = rng.uniform(-1.6, 1.6, (n, *out, rank)).astype(np.float32)
    attrs = {"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners}
    ours = check("GridSample", [("X", x), ("grid", grid)], attrs, opset=20, tol=1e-4)
    legacy = {"linear": "bilinear", "cubic": "bicubic", "nearest": "nearest"}[mode]
    if rank == 2:  # GridSample-16 is the same op on 4-D inputs, with the old mode names
        old = run(
            build("GridSample", [("X", x), ("grid", grid)], {**attrs, "mode": legacy}, 16), [("X", x), ("grid", grid)]
        )
        np.testing.assert_array_equal(old, ours)


def test_grid_sample_dtypes_and_errors() -> None:
    x = np.arange(12, dtype=np.float64).reshape(1, 1, 3, 4)
    grid = np.array([[[[-1.0, -1.0], [0.2, 0.4]]]], dtype=np.float64)
    assert check("GridSample", [("X", x), ("grid", grid)], {}, opset=20).dtype == np.float64
    xi = np.arange(12, dtype=np.int32).reshape(1, 1, 3, 4)
    picked = run(build("GridSample", [("X", xi), ("grid", grid)], {"mode": "nearest"}), [("X", xi), ("grid", grid)])
    assert picked.dtype == np.int32 and picked.tolist() == [[[[0, 10]]]]
    with pytest.raises(InvalidArgument, match="mode"):
        run(build("GridSample", [("X", x), ("grid", grid)], {"mode": "linear"}, 16), [("X", x), ("grid", grid)])
    with pytest.raises(InvalidArgument, match="padding_mode"):
        run(build("GridSample", [("X", x), ("grid", grid)], {"padding_mode": "wrap"}), [("X", x), ("grid", grid)])


@FAST
@given(seed=st.integers(0, 2**31 - 1), volumetric=st.booleans(), align_corners=st.integers(0, 1))
def test_affine_grid(seed: int, volumetric: bool, align_corners: int) -> None:
    rng = np.random.default_rng(seed)
    rank = 3 if volumetric else 2
    n = int(rng.integers(1, 3))
    theta = rng.standard_normal((n, rank, rank + 1)).astype(np.float32)
    size = np.array([n, 2, *rng.integers(2, 6, rank)], dtype=np.int64)
    check("AffineGrid", [("theta", theta), ("size", size)], {"align_corners": align_corners}, opset=20)
    ours64 = run(
        build("AffineGrid", [("theta", theta.astype(np.float64)), ("size", size)], {}, 20),
        [("theta", theta.astype(np.float64)), ("size", size)],
    )
    assert ours64.dtype == np.float64 and ours64.shape == (n, *size[2:], rank)


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    mode=st.sampled_from(["avg", "max"]),
    ctm=st.sampled_from(["half_pixel", "output_half_pixel", None]),
    sampling_ratio=st.integers(0, 3),
    spatial_scale=st.sampled_from([1.0, 0.5, 2.0]),
)
def test_roi_align(seed: int, mode: str, ctm: str | None, sampling_ratio: int, spatial_scale: float) -> None:
    rng = np.random.default_rng(seed)
    n, c, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(2, 9)), int(rng.integers(2, 9))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    num = int(rng.integers(1, 5))
    corners = rng.uniform(-2, max(h, w) + 2, (num, 2, 2))
    rois = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).astype(np.float32)
    batch = rng.integers(0, n, num).astype(np.int64)
    attrs: dict[str, Any] = {
        "mode": mode,
        "output_height": int(rng.integers(1, 4)),
        "output_width": int(rng.integers(1, 4)),
        "sampling_ratio": sampling_ratio,
        "spatial_scale": spatial_scale,
    }
    opset = 10 if ctm is None else 16
    if ctm is not None:
        attrs["coordinate_transformation_mode"] = ctm
    inputs: Inputs = [("X", x), ("rois", rois), ("batch_indices", batch)]
    proto = build("RoiAlign", inputs, attrs, opset)
    ours = run(proto, inputs)
    if ctm is None:  # the reference has no RoiAlign-10: it behaves as RoiAlign-16 with output_half_pixel
        attrs["coordinate_transformation_mode"] = "output_half_pixel"
        proto = build("RoiAlign", inputs, attrs, 16)
    expected = reference(proto, inputs)
    assert ours.shape == expected.shape and ours.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_roi_align_errors() -> None:
    x = np.zeros((1, 1, 4, 4), np.float32)
    inputs: Inputs = [("X", x), ("rois", np.zeros((1, 4), np.float32)), ("batch_indices", np.array([1]))]
    with pytest.raises(InvalidArgument, match="batch_indices"):
        run(build("RoiAlign", inputs), inputs)
    with pytest.raises(InvalidArgument, match="mode"):
        run(build("RoiAlign", inputs, {"mode": "sum"}), inputs)


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    center_point_box=st.integers(0, 1),
    limit=st.sampled_from([None, 0, 1, 3, 10]),
    iou=st.sampled_from([None, 0.0, 0.3, 0.5, 1.0]),
    score=st.sampled_from([None, 0.0, 0.4]),
)
def test_non_max_suppression(
    seed: int, center_point_box: int, limit: int | None, iou: float | None, score: float | None
) -> None:
    rng = np.random.default_rng(seed)
    batches, classes, count = int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(1, 9))
    boxes = rng.integers(-2, 6, (batches, count, 4)).astype(np.float32) * np.float32(0.5)
    scores = rng.integers(0, 5, (batches, classes, count)).astype(np.float32) / np.float32(4)
    inputs: Inputs = [
        ("boxes", boxes),
        ("scores", scores),
        ("max_output_boxes_per_class", np.array([3 if limit is None else limit], np.int64)),
        ("iou_threshold", None if iou is None else np.array([iou], np.float32)),
        ("score_threshold", None if score is None else np.array([score], np.float32)),
    ]
    proto = build("NonMaxSuppression", inputs, {"center_point_box": center_point_box}, opset=11)
    ours = run(proto, inputs)
    # The reference needs iou_threshold; an omitted one means 0.
    filled = [
        (name, np.zeros(1, np.float32) if name == "iou_threshold" and value is None else value)
        for name, value in inputs
    ]
    expected = reference(build("NonMaxSuppression", filled, {"center_point_box": center_point_box}, opset=11), filled)
    assert ours.dtype == np.int64 and ours.ndim == 2 and ours.shape[1] == 3
    np.testing.assert_array_equal(ours, expected.reshape(-1, 3))


def test_non_max_suppression_without_limit_selects_nothing() -> None:
    inputs: Inputs = [("boxes", np.zeros((1, 2, 4), np.float32)), ("scores", np.ones((1, 1, 2), np.float32))]
    ours = run(build("NonMaxSuppression", inputs, opset=11), inputs)
    assert ours.shape == (0, 3) and ours.dtype == np.int64


def encode(pixels: np.ndarray, fmt: str) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    fmt=st.sampled_from(["PNG", "JPEG", "BMP"]),
    pixel_format=st.sampled_from(["RGB", "BGR", "Grayscale"]),
)
def test_image_decoder(seed: int, fmt: str, pixel_format: str) -> None:
    pytest.importorskip("PIL")
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (int(rng.integers(1, 20)), int(rng.integers(1, 20)), 3), dtype=np.uint8)
    stream = encode(pixels, fmt)
    ours = check("ImageDecoder", [("encoded_stream", stream)], {"pixel_format": pixel_format}, opset=20, tol=0)
    assert ours.shape == (*pixels.shape[:2], 1 if pixel_format == "Grayscale" else 3)
    if fmt == "PNG" and pixel_format != "Grayscale":
        np.testing.assert_array_equal(ours, pixels if pixel_format == "RGB" else pixels[:, :, ::-1])


def test_image_decoder_needs_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(NotImplemented, match=r"onnxforge\[image\]"):
        image_kernels.ImageDecoder(np.zeros(4, np.uint8))


@FAST
@given(seed=st.integers(0, 2**31 - 1), use_axes=st.booleans(), dtype=st.sampled_from([np.float32, np.int64, np.bool_]))
def test_center_crop_pad(seed: int, use_axes: bool, dtype: type) -> None:
    rng = np.random.default_rng(seed)
    shape = [int(v) for v in rng.integers(1, 6, int(rng.integers(1, 4)))]
    data = (rng.standard_normal(shape) * 4).astype(dtype)
    axes = sorted(rng.choice(len(shape), int(rng.integers(1, len(shape) + 1)), replace=False).tolist())
    axes = [a - len(shape) if rng.integers(0, 2) else a for a in axes] if use_axes else list(range(len(shape)))
    target = rng.integers(1, 8, len(axes)).astype(np.int64)
    attrs = {"axes": axes} if use_axes else {}
    check("CenterCropPad", [("input_data", data), ("shape", target)], attrs, opset=18, tol=0)


@FAST
@given(seed=st.integers(0, 2**31 - 1), rank=st.integers(1, 3))
def test_col2im(seed: int, rank: int) -> None:
    rng = np.random.default_rng(seed)
    k = [int(v) for v in rng.integers(1, 4, rank)]
    s = [int(v) for v in rng.integers(1, 3, rank)]
    d = [int(v) for v in rng.integers(1, 3, rank)]
    pads = [int(v) for v in rng.integers(0, 2, 2 * rank)]
    image = [int(di * (ki - 1) + 1 + rng.integers(0, 4)) for ki, di in zip(k, d)]
    blocks = [
        (i + pb + pe - di * (ki - 1) - 1) // si + 1 for i, pb, pe, ki, si, di in zip(image, pads, pads[rank:], k, s, d)
    ]
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    data = rng.standard_normal((n, c * int(np.prod(k)), int(np.prod(blocks)))).astype(np.float32)
    inputs: Inputs = [
        ("input", data),
        ("image_shape", np.array(image, np.int64)),
        ("block_shape", np.array(k, np.int64)),
    ]
    ours = check("Col2Im", inputs, {"strides": s, "dilations": d, "pads": pads}, opset=18)
    assert ours.shape == (n, c, *image)


def test_col2im_rejects_a_wrong_block_count() -> None:
    inputs: Inputs = [
        ("input", np.zeros((1, 4, 5), np.float32)),
        ("image_shape", np.array([3, 3], np.int64)),
        ("block_shape", np.array([2, 2], np.int64)),
    ]
    with pytest.raises(InvalidArgument, match="Col2Im input"):
        run(build("Col2Im", inputs, opset=18), inputs)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), use_mask=st.booleans(), use_bias=st.booleans())
def test_deform_conv(seed: int, use_mask: bool, use_bias: bool) -> None:
    rng = np.random.default_rng(seed)
    group, offset_group = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    c = group * offset_group
    m = group * int(rng.integers(1, 3))
    k = [int(v) for v in rng.integers(1, 3, 2)]
    s = [int(v) for v in rng.integers(1, 3, 2)]
    d = [int(v) for v in rng.integers(1, 3, 2)]
    pads = [int(v) for v in rng.integers(0, 2, 4)]
    sizes = [int(di * (ki - 1) + 1 + rng.integers(1, 3)) for ki, di in zip(k, d)]
    out = [(i + pb + pe - di * (ki - 1) - 1) // si + 1 for i, pb, pe, ki, si, di in zip(sizes, pads, pads[2:], k, s, d)]
    x = rng.standard_normal((1, c, *sizes)).astype(np.float32)
    w = rng.standard_normal((m, c // group, *k)).astype(np.float32)
    offset = (rng.standard_normal((1, offset_group * k[0] * k[1] * 2, *out)) * 1.5).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32) if use_bias else None
    mask = rng.uniform(0, 1, (1, offset_group * k[0] * k[1], *out)).astype(np.float32) if use_mask else None
    inputs: Inputs = [("X", x), ("W", w), ("offset", offset), ("B", bias), ("mask", mask)]
    attrs = {"group": group, "offset_group": offset_group, "strides": s, "dilations": d, "pads": pads}
    check("DeformConv", inputs, attrs, opset=22, tol=1e-4)


def test_deform_conv_with_zero_offsets_is_conv() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float64)
    w = rng.standard_normal((6, 2, 3, 2)).astype(np.float64)
    offset = np.zeros((2, 2 * 3 * 2 * 2, 6, 5))
    attrs = {"group": 2, "offset_group": 2, "pads": [1, 0, 1, 1]}
    ours = run(
        build("DeformConv", [("X", x), ("W", w), ("offset", offset)], attrs), [("X", x), ("W", w), ("offset", offset)]
    )
    conv_attrs = {"group": 2, "pads": [1, 0, 1, 1]}
    conv = run(build("Conv", [("X", x), ("W", w)], conv_attrs), [("X", x), ("W", w)])
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, conv, rtol=1e-12, atol=1e-12)
