"""QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear (quantize.py) against onnx's reference evaluator.

Shapes, axes, granularities (per tensor, per axis, blocked), block sizes, target types and opsets are drawn
by hypothesis; results must match the reference bit for bit, with the same dtype and shape. x and the scale
share a type, so "division in the scale's precision" and the reference's NumPy promotion agree. The
``build``/``check`` helpers are shared with the other quantization test modules.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument
from onnxforge.runtime.kernels.quantize import dequantize, quantize

Inputs = list[tuple[str, np.ndarray | None]]
TRAINING = "ai.onnx.preview.training"


def build(
    op: str, inputs: Inputs, attrs: dict[str, Any] | None = None, outputs: int = 1, opset: int = 21, domain: str = ""
) -> onnx.ModelProto:
    """A one-node model of ``op`` whose graph inputs carry element types but no shapes."""
    names = [name if value is not None else "" for name, value in inputs]
    while names and not names[-1]:
        names.pop()
    out_names = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names, out_names, domain=domain, **(attrs or {}))
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), None)
        for name, value in inputs
        if value is not None
    ]
    graph_outputs = [helper.make_value_info(name, onnx.TypeProto()) for name in out_names]
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    proto = helper.make_model(helper.make_graph([node], "g", graph_inputs, graph_outputs), opset_imports=imports)
    proto.ir_version = 11 if opset >= 25 else 10
    return proto


def feed_of(inputs: Inputs) -> dict[str, np.ndarray]:
    return {name: value for name, value in inputs if value is not None}


def run(proto: onnx.ModelProto, inputs: Inputs) -> list[np.ndarray]:
    return InferenceSession(proto.SerializeToString()).run(None, feed_of(inputs))


def assert_same(got: Any, want: Any) -> None:
    """Same dtype, shape and values (NaN equal to NaN, compared as float64 for the ml_dtypes types)."""
    want = np.asarray(want)
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))


def check(
    op: str, inputs: Inputs, attrs: dict[str, Any] | None = None, outputs: int = 1, opset: int = 21, ref_opset: int = 0
) -> list[np.ndarray]:
    """Our outputs, after asserting they equal the reference's (run at ``ref_opset`` if it lacks ``opset``)."""
    proto = build(op, inputs, attrs, outputs, opset)
    ours = run(proto, inputs)
    reference = build(op, inputs, attrs, outputs, ref_opset) if ref_opset else proto
    expected = ReferenceEvaluator(reference).run(None, feed_of(inputs))
    for got, want in zip(ours, expected):
        assert_same(got, want)
    return ours


INTEGER_TARGETS = [
    np.uint8,
    np.int8,
    np.uint16,
    np.int16,
    ml_dtypes.uint4,
    ml_dtypes.int4,
    ml_dtypes.uint2,
    ml_dtypes.int2,
]
FLOAT8_TARGETS = [ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz]
# The first opset each target type appears in.
FIRST_OPSET = {np.dtype(t): 10 for t in (np.uint8, np.int8)}
FIRST_OPSET.update({np.dtype(t): 19 for t in FLOAT8_TARGETS})
FIRST_OPSET.update({np.dtype(t): 21 for t in (np.uint16, np.int16, ml_dtypes.uint4, ml_dtypes.int4)})
FIRST_OPSET.update({np.dtype(ml_dtypes.float4_e2m1fn): 23})
FIRST_OPSET.update({np.dtype(t): 25 for t in (ml_dtypes.uint2, ml_dtypes.int2)})
OPSETS = [10, 13, 19, 21, 23, 24, 25]
SUB_BYTE_INTEGERS = frozenset(np.dtype(t) for t in (ml_dtypes.uint4, ml_dtypes.int4, ml_dtypes.uint2, ml_dtypes.int2))


@st.composite
def quant_cases(draw: st.DrawFn) -> dict[str, Any]:
    target = np.dtype(draw(st.sampled_from(INTEGER_TARGETS + FLOAT8_TARGETS + [ml_dtypes.float4_e2m1fn])))
    opset = draw(st.sampled_from([o for o in OPSETS if o >= FIRST_OPSET[target]]))
    rank = draw(st.integers(0 if opset < 21 else 1, 4))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    kinds = ["tensor"] + (["axis"] if opset >= 13 and rank else []) + (["blocked"] if opset >= 21 and rank else [])
    kind = draw(st.sampled_from(kinds))
    axis = draw(st.integers(-rank, rank - 1)) if rank else 1
    block = draw(st.integers(1, shape[axis] + 1)) if kind == "blocked" else 0
    if kind == "tensor":
        param_shape: tuple[int, ...] = draw(st.sampled_from([(), (1,)]))
    elif kind == "axis":
        param_shape = (shape[axis],)
    else:
        param_shape = tuple(-(-d // block) if i == axis % rank else d for i, d in enumerate(shape))
    float_type = np.float16 if draw(st.booleans()) and opset >= 19 else np.float32
    return {
        "target": target,
        "opset": opset,
        "shape": shape,
        "axis": axis,
        "block": block,
        "param_shape": param_shape,
        "float_type": float_type,
        # x and y_scale may differ in type (int32 x, float scale) from opset 23 on
        "int_input": draw(st.booleans()) and target.kind in "iu" and float_type == np.float32 and opset >= 23,
        "zero_point": draw(st.booleans()) or opset < 21,
        "saturate": draw(st.sampled_from([0, 1])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _integer(dtype: np.dtype) -> bool:
    return dtype.kind in "iu" or dtype in SUB_BYTE_INTEGERS


def _values(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Random valid values of a quantized type: its whole integer range, or floats in [-8, 8]."""
    if _integer(dtype):
        info = ml_dtypes.iinfo(dtype)
        return rng.integers(int(info.min), int(info.max) + 1, size=shape).astype(dtype)
    return rng.uniform(-8, 8, size=shape).astype(dtype)


def _zero_points(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return _values(rng, dtype, shape) if _integer(dtype) else np.zeros(shape, dtype=dtype)  # float zero points are 0


@settings(max_examples=40, deadline=None)
@given(quant_cases())
def test_quantize_linear_matches_reference(case: dict[str, Any]) -> None:
    rng = np.random.default_rng(case["seed"])
    target, opset = case["target"], case["opset"]
    if case["int_input"]:
        x = rng.integers(-400, 400, size=case["shape"]).astype(np.int32)
        scale = rng.choice([0.25, 0.5, 1.0, 2.0, 4.0], size=case["param_shape"]).astype(np.float32)
    else:
        x = (rng.standard_normal(case["shape"]) * rng.choice([1, 10, 1000])).astype(case["float_type"])
        scale = rng.uniform(0.05, 3, size=case["param_shape"]).astype(case["float_type"])
    attrs: dict[str, Any] = {}
    if opset >= 13:
        attrs["axis"] = case["axis"]
    if opset >= 19 and target in map(np.dtype, FLOAT8_TARGETS):
        attrs["saturate"] = case["saturate"]
    if case["block"]:
        attrs["block_size"] = case["block"]
    zero_point = _zero_points(rng, target, case["param_shape"]) if case["zero_point"] else None
    if zero_point is None:
        attrs["output_dtype"] = helper.np_dtype_to_tensor_dtype(target)
    (y,) = check("QuantizeLinear", [("x", x), ("scale", scale), ("zp", zero_point)], attrs, opset=opset)
    assert y.dtype == target


@st.composite
def dequant_cases(draw: st.DrawFn) -> dict[str, Any]:
    case = draw(quant_cases())
    if case["opset"] >= 21 and draw(st.integers(0, 5)) == 0:
        case["target"] = np.dtype(np.int32)  # int32 accumulators dequantize without a zero point
        case["zero_point"] = False
    case["scale_type"] = (
        draw(st.sampled_from([np.float32, np.float16, ml_dtypes.bfloat16])) if case["opset"] >= 19 else np.float32
    )
    case["output_dtype"] = (
        draw(st.sampled_from([0, TensorProto.FLOAT, TensorProto.FLOAT16])) if case["opset"] >= 23 else 0
    )
    return case


@settings(max_examples=40, deadline=None)
@given(dequant_cases())
def test_dequantize_linear_matches_reference(case: dict[str, Any]) -> None:
    rng = np.random.default_rng(case["seed"])
    source, opset = case["target"], case["opset"]
    if source == np.int32:
        x = rng.integers(-(2**20), 2**20, size=case["shape"]).astype(np.int32)
    else:
        x = _values(rng, source, case["shape"])
    scale = rng.uniform(0.05, 3, size=case["param_shape"]).astype(case["scale_type"])
    attrs: dict[str, Any] = {"axis": case["axis"]} if opset >= 13 else {}
    if case["block"]:
        attrs["block_size"] = case["block"]
    if case["output_dtype"]:
        attrs["output_dtype"] = case["output_dtype"]
    zero_point = _zero_points(rng, source, case["param_shape"]) if case["zero_point"] and source != np.int32 else None
    # The reference starts at DequantizeLinear-19; 10 and 13 compute the same for their types.
    inputs: Inputs = [("x", x), ("scale", scale), ("zp", zero_point)]
    check("DequantizeLinear", inputs, attrs, opset=opset, ref_opset=max(opset, 19))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=0, max_size=3), st.integers(0, 2**32 - 1), st.sampled_from([0.01, 1, 100]))
def test_dynamic_quantize_linear_matches_reference(shape: list[int], seed: int, spread: float) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * spread + rng.choice([-spread, 0, spread])).astype(np.float32)
    if not np.any(x):
        x = np.full(shape, 0.5, dtype=np.float32)
    check("DynamicQuantizeLinear", [("x", x)], outputs=3, opset=11)


def test_dynamic_quantize_linear_of_zeros_uses_unit_scale() -> None:
    # max == min: the formula divides by zero; onnxruntime reports scale 1 (the reference 1/255).
    inputs: Inputs = [("x", np.zeros(3, np.float32))]
    y, scale, zp = run(build("DynamicQuantizeLinear", inputs, outputs=3, opset=11), inputs)
    assert y.tolist() == [0, 0, 0] and scale.dtype == np.float32 and float(scale) == 1.0 and int(zp) == 0
    assert scale.shape == () and zp.shape == () and zp.dtype == np.uint8


def test_quantize_rounds_half_to_even_and_saturates() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1000, -1000], dtype=np.float32)
    (y,) = check("QuantizeLinear", [("x", x), ("s", np.float32(1)), ("zp", np.int8(0))], opset=13)
    assert y.tolist() == [0, 2, 2, 0, -2, 127, -128]


@pytest.mark.parametrize(
    ("target", "saturated", "unsaturated"),
    [
        (ml_dtypes.float8_e4m3fn, 448.0, np.nan),
        (ml_dtypes.float8_e5m2, 57344.0, np.inf),
        (ml_dtypes.float8_e4m3fnuz, 240.0, np.nan),
        (ml_dtypes.float8_e5m2fnuz, 57344.0, np.nan),
    ],
)
def test_float8_saturation(target: Any, saturated: float, unsaturated: float) -> None:
    x = np.array([1e6, -1e6, np.inf], dtype=np.float32)
    zp = np.zeros((), dtype=target)
    (y,) = check("QuantizeLinear", [("x", x), ("s", np.float32(1)), ("zp", zp)], {"saturate": 1}, opset=19)
    assert y.astype(np.float32).tolist() == [saturated, -saturated, saturated]
    (y,) = check("QuantizeLinear", [("x", x), ("s", np.float32(1)), ("zp", zp)], {"saturate": 0}, opset=19)
    values = y.astype(np.float32)
    assert np.isnan(values[0]) if np.isnan(unsaturated) else values[0] == unsaturated


@pytest.mark.parametrize("precision", [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16])
def test_precision_attribute_sets_the_division_type(precision: int) -> None:
    x = np.array([1.0, 3.0, 1000.0, 0.7001, -2049.3], dtype=np.float32)
    inputs: Inputs = [("x", x), ("s", np.float16(0.3)), ("zp", np.int16(0))]
    check("QuantizeLinear", inputs, {"precision": precision}, opset=23)


def test_float8e8m0_scale_dequantizes_with_output_dtype() -> None:
    x = np.array([1, -2, 3], dtype=np.int8)
    inputs: Inputs = [("x", x), ("s", np.array(4.0, dtype=ml_dtypes.float8_e8m0fnu))]
    (y,) = run(build("DequantizeLinear", inputs, {"output_dtype": TensorProto.FLOAT}, opset=24), inputs)
    assert y.dtype == np.float32 and y.tolist() == [4.0, -8.0, 12.0]


@pytest.mark.parametrize(
    ("op", "inputs", "attrs", "opset", "message"),
    [
        ("QuantizeLinear", [("x", np.ones((2, 3), np.float32)), ("s", np.ones(2, np.float32))], {}, 13, "length 3"),
        ("QuantizeLinear", [("x", np.ones((2, 3), np.float32)), ("s", np.ones(3, np.float32))], {}, 10, "scalar"),
        (
            "QuantizeLinear",
            [("x", np.ones((2, 4), np.float32)), ("s", np.ones((2, 3), np.float32))],
            {"block_size": 2},
            21,
            "blocked",
        ),
    ],
)
def test_invalid_arguments_are_reported(
    op: str, inputs: Inputs, attrs: dict[str, Any], opset: int, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        run(build(op, inputs, attrs, opset=opset), inputs)


def test_zero_point_types_are_checked() -> None:
    # A typed graph is refused by inference at load; the kernels check too, for untyped callers.
    scale = np.ones((), np.float32)
    with pytest.raises(InvalidArgument, match="x_zero_point"):
        dequantize(np.ones(3, np.int8), scale, np.zeros((), np.uint8))
    with pytest.raises(InvalidArgument, match="output_dtype"):
        quantize(np.ones(3, np.float32), scale, np.zeros((), np.uint8), output_dtype=TensorProto.INT8)
