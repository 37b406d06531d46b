"""MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv (integer_ops.py) and BitCast (bitcast.py).

Results are compared bit for bit with onnx's reference evaluator on hypothesis-drawn shapes, types, zero
points, scales and conv geometries. The reference broadcasts per-channel weight parameters only for 2-D
convolutions and 1-D per-row zero points not at all, so those cases are drawn only where it can follow, and
checked against a direct formula otherwise. Scales are irregular, so exact rounding ties (where the spec
rounds before adding the zero point and the reference after) do not occur.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto

from onnxforge import InvalidArgument
from onnxforge.runtime.kernels.bitcast import bitcast_array
from tests.runtime.kernels.test_quantize import Inputs, build, check, run

seeds = st.integers(0, 2**32 - 1)
INT8 = [np.uint8, np.int8]


def _ints(rng: np.random.Generator, dtype: Any, shape: tuple[int, ...] | list[int]) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(int(info.min), int(info.max) + 1, size=shape).astype(dtype)


@st.composite
def matmul_shapes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    m, k, n = (draw(st.integers(1, 6)) for _ in range(3))
    batch = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))
    b_batch = batch[draw(st.integers(0, len(batch))) :] if batch else ()
    return (*batch, m, k), (*b_batch, k, n)


@settings(max_examples=25, deadline=None)
@given(
    matmul_shapes(), st.sampled_from(INT8), st.sampled_from(INT8), st.sampled_from(["none", "scalar", "vector"]), seeds
)
def test_matmul_integer_matches_reference(shapes: Any, a_type: Any, b_type: Any, zp_kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a_shape, b_shape = shapes
    a, b = _ints(rng, a_type, a_shape), _ints(rng, b_type, b_shape)
    a_zp = b_zp = None
    if zp_kind == "scalar":
        a_zp, b_zp = _ints(rng, a_type, ()), _ints(rng, b_type, ())
    elif zp_kind == "vector":  # per row of A as [..., M, 1], per column of B as [N]
        a_zp, b_zp = _ints(rng, a_type, (*a_shape[:-1], 1)), _ints(rng, b_type, (b_shape[-1],))
    (y,) = check("MatMulInteger", [("A", a), ("B", b), ("a_zp", a_zp), ("b_zp", b_zp)], opset=10)
    assert y.dtype == np.int32


def test_matmul_integer_takes_a_1d_per_row_zero_point() -> None:
    a = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    b = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8)
    a_zp, b_zp = np.array([1, 2], dtype=np.uint8), np.array([0, 1], dtype=np.uint8)
    inputs: Inputs = [("A", a), ("B", b), ("a_zp", a_zp), ("b_zp", b_zp)]
    (y,) = run(build("MatMulInteger", inputs, opset=10), inputs)
    want = (a.astype(np.int32) - a_zp.reshape(2, 1)) @ (b.astype(np.int32) - b_zp)
    assert y.dtype == np.int32 and y.tolist() == want.tolist()


@st.composite
def conv_cases(draw: st.DrawFn) -> dict[str, Any]:
    rank = draw(st.integers(1, 3))
    group = draw(st.sampled_from([1, 1, 2, 3]))
    kernel = [draw(st.integers(1, 3 if rank < 3 else 2)) for _ in range(rank)]
    strides = [draw(st.integers(1, 3)) for _ in range(rank)]
    dilations = [draw(st.integers(1, 2)) for _ in range(rank)]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    pads = [draw(st.integers(0, 2)) for _ in range(2 * rank)] if auto_pad == "NOTSET" else None
    spatial = []
    for i in range(rank):
        span = dilations[i] * (kernel[i] - 1) + 1
        low = max(1, span - (pads[i] + pads[i + rank] if pads else 0)) if auto_pad != "SAME_UPPER" else 1
        spatial.append(draw(st.integers(low, low + 4)))
    attrs: dict[str, Any] = {"kernel_shape": kernel, "strides": strides, "dilations": dilations, "group": group}
    attrs["auto_pad"] = auto_pad
    if pads:
        attrs["pads"] = pads
    return {
        "rank": rank,
        "shape_x": (draw(st.integers(1, 2)), group * draw(st.integers(1, 2)), *spatial),
        "shape_w_lead": (group * draw(st.integers(1, 2)),),
        "kernel": kernel,
        "group": group,
        "attrs": attrs,
        "x_type": draw(st.sampled_from(INT8)),
        "w_type": draw(st.sampled_from(INT8)),
        # the reference broadcasts per-channel weight parameters only for 2-D convolutions
        "per_channel": draw(st.booleans()) and rank == 2,
        "seed": draw(seeds),
    }


def _conv_inputs(case: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = _ints(rng, case["x_type"], case["shape_x"])
    cg = case["shape_x"][1] // case["group"]
    w = _ints(rng, case["w_type"], (case["shape_w_lead"][0], cg, *case["kernel"]))
    return x, w


@settings(max_examples=25, deadline=None)
@given(conv_cases(), st.booleans())
def test_conv_integer_matches_reference(case: dict[str, Any], zero_points: bool) -> None:
    rng = np.random.default_rng(case["seed"])
    x, w = _conv_inputs(case, rng)
    m = w.shape[0]
    x_zp = _ints(rng, x.dtype, ()) if zero_points else None
    w_zp = (_ints(rng, w.dtype, (m,) if case["per_channel"] else ())) if zero_points else None
    (y,) = check("ConvInteger", [("x", x), ("w", w), ("x_zp", x_zp), ("w_zp", w_zp)], case["attrs"], opset=10)
    assert y.dtype == np.int32


@settings(max_examples=25, deadline=None)
@given(conv_cases(), st.booleans(), st.sampled_from(INT8))
def test_qlinear_conv_matches_reference(case: dict[str, Any], bias: bool, y_type: Any) -> None:
    rng = np.random.default_rng(case["seed"])
    x, w = _conv_inputs(case, rng)
    m = w.shape[0]
    per = (m,) if case["per_channel"] else ()
    inputs: Inputs = [
        ("x", x),
        ("x_scale", np.float32(rng.uniform(0.001, 0.05))),
        ("x_zp", _ints(rng, x.dtype, ())),
        ("w", w),
        ("w_scale", rng.uniform(0.001, 0.05, size=per).astype(np.float32)),
        ("w_zp", _ints(rng, w.dtype, per)),
        ("y_scale", np.float32(rng.uniform(0.01, 0.5))),
        ("y_zp", _ints(rng, y_type, ())),
        ("B", rng.integers(-5000, 5000, size=m).astype(np.int32) if bias else None),
    ]
    (y,) = check("QLinearConv", inputs, case["attrs"], opset=10)
    assert y.dtype == y_type


@settings(max_examples=30, deadline=None)
@given(
    matmul_shapes(),
    st.sampled_from(INT8),
    st.sampled_from(INT8),
    st.sampled_from(INT8),
    st.sampled_from([10, 21]),
    seeds,
)
def test_qlinear_matmul_matches_reference(
    shapes: Any, a_type: Any, b_type: Any, y_type: Any, opset: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    scale_type = rng.choice([np.float32, np.float16]) if opset >= 21 else np.float32
    a_shape, b_shape = shapes
    inputs: Inputs = [
        ("a", _ints(rng, a_type, a_shape)),
        ("a_scale", np.array([rng.uniform(0.001, 0.05)], dtype=scale_type)),
        ("a_zp", _ints(rng, a_type, (1,))),
        ("b", _ints(rng, b_type, b_shape)),
        ("b_scale", np.array([rng.uniform(0.001, 0.05)], dtype=scale_type)),
        ("b_zp", _ints(rng, b_type, (1,))),
        ("y_scale", np.array([rng.uniform(0.01, 0.5)], dtype=scale_type)),
        ("y_zp", _ints(rng, y_type, (1,))),
    ]
    (y,) = check("QLinearMatMul", inputs, opset=opset)
    assert y.dtype == y_type


def test_qlinear_matmul_per_row_and_column_parameters() -> None:
    rng = np.random.default_rng(0)
    a, b = _ints(rng, np.uint8, (3, 4)), _ints(rng, np.int8, (4, 2))
    a_s, a_zp = np.array([0.01, 0.02, 0.03], np.float32), np.array([120, 128, 130], np.uint8)
    b_s, b_zp = np.array([0.05, 0.07], np.float32), np.array([-1, 2], np.int8)
    y_s, y_zp = np.float32(0.37), np.uint8(100)
    inputs: Inputs = [
        ("a", a),
        ("as", a_s),
        ("az", a_zp),
        ("b", b),
        ("bs", b_s),
        ("bz", b_zp),
        ("ys", y_s),
        ("yz", y_zp),
    ]
    (y,) = run(build("QLinearMatMul", inputs, opset=10), inputs)
    acc = (a.astype(np.int64) - a_zp.reshape(3, 1)) @ (b.astype(np.int64) - b_zp)
    ratio = a_s.reshape(3, 1) * b_s / y_s
    want = np.clip(np.rint(acc * ratio.astype(np.float64)) + 100, 0, 255).astype(np.uint8)
    assert y.dtype == np.uint8 and y.tolist() == want.tolist()


def test_qlinear_matmul_float8() -> None:
    e4m3 = ml_dtypes.float8_e4m3fn
    a = np.array([[1.0, 2.0], [-3.0, 0.5]], dtype=e4m3)
    b = np.array([[2.0, 0.0], [1.0, 448.0]], dtype=e4m3)
    zero, one = np.zeros((), e4m3), np.float32(1.0)
    inputs: Inputs = [
        ("a", a),
        ("as", one),
        ("az", zero),
        ("b", b),
        ("bs", one),
        ("bz", zero),
        ("ys", np.float32(0.5)),
        ("yz", zero),
    ]
    (y,) = run(build("QLinearMatMul", inputs, opset=21), inputs)
    assert y.dtype == e4m3
    assert y.astype(np.float32).tolist() == [[8.0, 448.0], [-11.0, 448.0]]  # 1792 saturates to 448


def test_conv_integer_rejects_mismatched_channels() -> None:
    inputs: Inputs = [("x", np.zeros((1, 3, 4, 4), np.uint8)), ("w", np.zeros((2, 2, 1, 1), np.uint8))]
    with pytest.raises(InvalidArgument, match="channels"):
        run(build("ConvInteger", inputs, opset=10), inputs)


BITCAST_PAIRS = [
    (np.float32, TensorProto.INT32),
    (np.int32, TensorProto.FLOAT),
    (np.uint32, TensorProto.INT32),
    (np.float64, TensorProto.INT64),
    (np.int64, TensorProto.DOUBLE),
    (np.uint64, TensorProto.DOUBLE),
    (np.float16, TensorProto.BFLOAT16),
    (np.uint16, TensorProto.FLOAT16),
    (np.int8, TensorProto.UINT8),
    (np.uint8, TensorProto.FLOAT8E4M3FN),
    (np.bool_, TensorProto.UINT8),
    (np.complex64, TensorProto.INT64),
    (ml_dtypes.int4, TensorProto.UINT4),
    (ml_dtypes.uint4, TensorProto.FLOAT4E2M1),
]


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(BITCAST_PAIRS), st.lists(st.integers(1, 4), max_size=3), seeds)
def test_bitcast_matches_reference(pair: tuple[Any, int], shape: list[int], seed: int) -> None:
    source, to = pair
    rng = np.random.default_rng(seed)
    source = np.dtype(source)
    if source in (np.dtype(ml_dtypes.int4), np.dtype(ml_dtypes.uint4)):
        info = ml_dtypes.iinfo(source)
        x = rng.integers(int(info.min), int(info.max) + 1, size=shape).astype(source)
    else:
        x = rng.integers(0, 256, size=(*shape, source.itemsize), dtype=np.uint8).view(source).reshape(shape)
        if source == np.bool_:
            x = x.view(np.uint8) % 2 == 1
    check("BitCast", [("x", x)], {"to": to}, opset=26)


def test_bitcast_refuses_different_widths() -> None:
    with pytest.raises(InvalidArgument, match="bit width"):
        bitcast_array(np.zeros(3, np.float32), TensorProto.INT64)
    with pytest.raises(InvalidArgument, match="bit width"):
        bitcast_array(np.zeros(3, ml_dtypes.int4), TensorProto.INT8)
