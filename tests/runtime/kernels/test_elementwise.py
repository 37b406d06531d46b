"""Element-wise arithmetic and unary math against onnx's reference evaluator on generated shapes and types.

The small-model helpers at the top (``single_op_model``, ``check_against_reference``) are shared with the
logic, activation and reduce kernel tests.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession

LATEST = onnx.defs.onnx_opset_version()
FLOATS = [np.float16, np.float32, np.float64]
INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
TOLERANCE = {np.dtype(np.float16): 2e-3, np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

# --- shared helpers -------------------------------------------------------------------------------------


def single_op_model(
    op: str,
    inputs: list[np.ndarray | None],
    *,
    opset: int = LATEST,
    out_dtypes: list[Any] | None = None,
    constants: frozenset[int] = frozenset(),
    **attrs: Any,
) -> onnx.ModelProto:
    """One ``op`` node over inputs ``x0, x1, ...`` (None: omitted); indices in ``constants`` are initializers."""
    names = [f"x{i}" if value is not None else "" for i, value in enumerate(inputs)]
    while names and not names[-1]:
        names.pop()
    out_dtypes = out_dtypes or [next(v for v in inputs if v is not None).dtype]
    outputs = [f"y{i}" for i in range(len(out_dtypes))]
    graph_inputs, initializers = [], []
    for i, value in enumerate(inputs):
        if value is None:
            continue
        if i in constants:
            initializers.append(numpy_helper.from_array(value, f"x{i}"))
        else:
            elem = helper.np_dtype_to_tensor_dtype(value.dtype)
            graph_inputs.append(helper.make_tensor_value_info(f"x{i}", elem, value.shape))
    graph_outputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dt)), None)
        for name, dt in zip(outputs, out_dtypes)
    ]
    node = helper.make_node(op, names, outputs, **attrs)
    graph = helper.make_graph([node], op.lower(), graph_inputs, graph_outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def feeds(model: onnx.ModelProto, inputs: list[np.ndarray | None]) -> dict[str, np.ndarray]:
    wanted = {v.name for v in model.graph.input}
    return {f"x{i}": v for i, v in enumerate(inputs) if v is not None and f"x{i}" in wanted}


def run_ours(model: onnx.ModelProto, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    return InferenceSession(model.SerializeToString()).run(None, feeds(model, inputs))


def run_reference(model: onnx.ModelProto, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. NumPy's "Mean of empty slice" inside the reference
        return [np.asarray(r) for r in ReferenceEvaluator(model).run(None, feeds(model, inputs))]


def assert_same(ours: np.ndarray, expected: np.ndarray, rtol: float | None = None, atol: float = 0.0) -> None:
    assert isinstance(ours, np.ndarray), type(ours)
    assert ours.dtype == expected.dtype, (ours.dtype, expected.dtype)
    assert ours.shape == expected.shape, (ours.shape, expected.shape)
    if expected.dtype.kind in "fc":
        tol = TOLERANCE.get(expected.dtype, 1e-5) if rtol is None else rtol
        np.testing.assert_allclose(
            ours.astype(np.float64), expected.astype(np.float64), rtol=tol, atol=max(atol, tol), equal_nan=True
        )
    else:
        np.testing.assert_array_equal(ours, expected)


def check_against_reference(
    op: str,
    inputs: list[np.ndarray | None],
    *,
    rtol: float | None = None,
    atol: float = 0.0,
    **model_kwargs: Any,
) -> list[np.ndarray]:
    model = single_op_model(op, inputs, **model_kwargs)
    with np.errstate(all="ignore"):
        ours = run_ours(model, inputs)
    expected = run_reference(model, inputs)
    for got, want in zip(ours, expected):
        assert_same(got, want, rtol, atol)
    return ours


def random_array(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, low: float = -5, high: float = 5
) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(low, info.min), min(high, info.max), size=shape, endpoint=True).astype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    return rng.uniform(low, high, size=shape).astype(dtype)


seeds = st.integers(0, 2**32 - 1)
pairs_of_shapes = mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4)


# --- binary arithmetic ----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    op=st.sampled_from(["Add", "Sub", "Mul", "Div"]),
    dtype=st.sampled_from(FLOATS + INTS),
    shapes=pairs_of_shapes,
    seed=seeds,
)
def test_arithmetic_broadcasts_like_the_reference(op: str, dtype: Any, shapes: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = random_array(rng, shapes.input_shapes[0], dtype, 0 if np.dtype(dtype).kind == "u" else -50, 50)
    b = random_array(rng, shapes.input_shapes[1], dtype, 1, 9)  # nonzero divisors
    (out,) = check_against_reference(op, [a, b])
    assert out.shape == shapes.result_shape


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
def test_integer_division_truncates_toward_zero(dtype: Any) -> None:
    a = np.array([7, -7, 7, -7, 0, -1], dtype=dtype)
    b = np.array([2, 2, -2, -2, 3, 2], dtype=dtype)
    (out,) = check_against_reference("Div", [a, b])
    np.testing.assert_array_equal(out, np.array([3, -3, -3, 3, 0, 0], dtype=dtype))


@settings(max_examples=25, deadline=None)
@given(
    types=st.sampled_from(
        [
            (np.float32, np.float32),
            (np.float64, np.float64),
            (np.float16, np.float16),
            (np.float32, np.int64),
            (np.float32, np.int32),
            (np.int64, np.float32),
            (np.int32, np.float32),
            (np.int64, np.int64),
            (np.int32, np.int32),
        ]
    ),
    shapes=pairs_of_shapes,
    constant=st.booleans(),
    seed=seeds,
)
def test_pow_keeps_the_base_type(types: tuple[Any, Any], shapes: Any, constant: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = random_array(rng, shapes.input_shapes[0], types[0], 0, 4)
    exponent = random_array(rng, shapes.input_shapes[1], types[1], 0, 3)
    check_against_reference("Pow", [base, exponent], constants=frozenset({1} if constant else ()))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int32])
def test_pow_by_constant_two_squares(dtype: Any) -> None:
    x = np.array([[-3, 0.5, 2], [1, -1, 4]]).astype(dtype)
    (out,) = check_against_reference("Pow", [x, np.array(2, dtype=np.int64)], constants=frozenset({1}))
    np.testing.assert_array_equal(out, (x.astype(np.float64) ** 2).astype(dtype))


def test_pow_integer_base_with_negative_integer_exponent() -> None:
    base = np.array([2, 1, -1, 4], dtype=np.int64)
    exponent = np.array([-1, -3, -3, 2], dtype=np.int64)
    model = single_op_model("Pow", [base, exponent])
    (out,) = run_ours(model, [base, exponent])
    np.testing.assert_array_equal(out, np.array([0, 1, -1, 16], dtype=np.int64))


@settings(max_examples=25, deadline=None)
@given(
    dtype=st.sampled_from(FLOATS + [np.int8, np.int32, np.int64, np.uint8, np.uint32]),
    fmod=st.integers(0, 1),
    shapes=pairs_of_shapes,
    seed=seeds,
)
def test_mod_matches_the_reference(dtype: Any, fmod: int, shapes: Any, seed: int) -> None:
    if fmod == 0 and np.dtype(dtype).kind == "f":
        fmod = 1  # before opset 28 fmod=0 is only defined for integers; checked at opset 28 below
    rng = np.random.default_rng(seed)
    signed = np.dtype(dtype).kind != "u"
    a = random_array(rng, shapes.input_shapes[0], dtype, -20 if signed else 0, 20)
    b = random_array(rng, shapes.input_shapes[1], dtype, 1, 7)
    if signed:
        b = (b * rng.choice(np.array([-1, 1], dtype=dtype), size=b.shape)).astype(dtype)
    check_against_reference("Mod", [a, b], opset=13, fmod=fmod)


def test_float_mod_follows_the_divisor_sign_at_opset_28() -> None:
    a = np.array([5.5, -5.5, 5.5, -5.5, -0.0, -5.0, 5.0], dtype=np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0, 3.0, np.inf, -np.inf], dtype=np.float32)
    (out,) = check_against_reference("Mod", [a, b], opset=28, fmod=0)
    np.testing.assert_array_equal(out, np.array([1.5, 0.5, -0.5, -1.5, 0.0, np.inf, -np.inf], dtype=np.float32))


def test_opset6_broadcast_attribute_aligns_b_at_axis() -> None:
    a = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    b = np.arange(12, dtype=np.float32).reshape(3, 4)
    for op, fn in (("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply), ("Div", np.divide)):
        model = single_op_model(op, [a, b + 1], opset=6, broadcast=1, axis=1)
        (out,) = run_ours(model, [a, b + 1])
        np.testing.assert_allclose(out, fn(a, (b + 1).reshape(3, 4, 1)), rtol=1e-6)
    model = single_op_model("Add", [a, b[0, :1].reshape(1)], opset=6, broadcast=1)  # no axis: suffix alignment
    (out,) = run_ours(model, [a, b[0, :1].reshape(1)])
    np.testing.assert_array_equal(out, a)


def test_scalar_inputs_give_0d_arrays() -> None:
    for op in ("Add", "Div", "Pow", "Max", "Sqrt", "Erf", "IsNaN"):
        inputs = [np.array(2.0, dtype=np.float32)] * (1 if op in ("Sqrt", "Erf", "IsNaN") else 2)
        out = check_against_reference(op, inputs, out_dtypes=[np.bool_] if op == "IsNaN" else None)[0]
        assert type(out) is np.ndarray and out.shape == ()


# --- unary math -----------------------------------------------------------------------------------------

UNARY_DOMAINS = {
    "Neg": (-5, 5),
    "Abs": (-5, 5),
    "Sqrt": (0, 9),
    "Exp": (-5, 5),
    "Log": (0.01, 9),
    "Reciprocal": (0.5, 4),
    "Floor": (-5, 5),
    "Ceil": (-5, 5),
    "Round": (-5, 5),
    "Sign": (-5, 5),
    "Sin": (-5, 5),
    "Cos": (-5, 5),
    "Tan": (-1.4, 1.4),
    "Asin": (-1, 1),
    "Acos": (-1, 1),
    "Atan": (-5, 5),
    "Sinh": (-5, 5),
    "Cosh": (-5, 5),
    "Asinh": (-5, 5),
    "Acosh": (1, 9),
    "Atanh": (-0.99, 0.99),
    "Erf": (-4, 4),
}


@settings(max_examples=40, deadline=None)
@given(
    op=st.sampled_from(sorted(UNARY_DOMAINS)),
    dtype=st.sampled_from(FLOATS),
    shape=st.lists(st.integers(0, 4), max_size=3).map(tuple),
    seed=seeds,
)
def test_unary_math_matches_the_reference(op: str, dtype: Any, shape: tuple[int, ...], seed: int) -> None:
    low, high = UNARY_DOMAINS[op]
    x = random_array(np.random.default_rng(seed), shape, dtype, low, high)
    # onnx's Erf rounds through float32 even for float64; ours is checked against math.erf below.
    check_against_reference(op, [x], rtol=1e-7 if op == "Erf" and dtype == np.float64 else None)


@pytest.mark.parametrize("op", ["Neg", "Abs", "Sign"])
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
def test_unary_integer_ops(op: str, dtype: Any) -> None:
    check_against_reference(op, [np.array([[-3, 0, 7]], dtype=dtype)])


def test_round_halves_to_even() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6], dtype=np.float32)
    (out,) = check_against_reference("Round", [x])
    np.testing.assert_array_equal(out, np.array([0, 2, 2, -0.0, -2, 2, -3], dtype=np.float32))


def test_erf_is_accurate_in_float64() -> None:
    x = np.concatenate([np.linspace(-7, 7, 2001), np.geomspace(1e-300, 1, 50), [0.0, np.inf, -np.inf]])
    (out,) = run_ours(single_op_model("Erf", [x]), [x])
    expected = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(out, expected, rtol=1e-14, atol=0)
    (nan,) = run_ours(single_op_model("Erf", [x[:1]]), [np.array([np.nan])])
    assert np.isnan(nan).all()


# --- variadic, Clip, bit ops, IsNaN / IsInf ------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    op=st.sampled_from(["Max", "Min", "Sum", "Mean"]),
    dtype=st.sampled_from(FLOATS + [np.int32, np.int64, np.uint8]),
    shapes=mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3),
    count=st.integers(1, 3),
    seed=seeds,
)
def test_variadic_ops_broadcast(op: str, dtype: Any, shapes: Any, count: int, seed: int) -> None:
    if op in ("Sum", "Mean") and np.dtype(dtype).kind != "f":
        dtype = np.float32  # only Max and Min take integers
    rng = np.random.default_rng(seed)
    inputs = [random_array(rng, shape, dtype, 0, 50) for shape in shapes.input_shapes[:count]]
    # NumPy is the reference here: onnx's Mean accumulates in place into its first input, so it cannot
    # broadcast when that input is the smaller one.
    fold = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}[op]
    expected = functools.reduce(fold, inputs)
    if op == "Mean":
        expected = (expected / count).astype(dtype)
    (out,) = run_ours(single_op_model(op, inputs), inputs)
    assert_same(out, np.asarray(expected))


@settings(max_examples=25, deadline=None)
@given(
    dtype=st.sampled_from(FLOATS + [np.int8, np.int32, np.int64, np.uint8]),
    bounds=st.tuples(st.one_of(st.none(), st.integers(-3, 3)), st.one_of(st.none(), st.integers(-3, 3))),
    opset=st.sampled_from([11, 12, 13, LATEST]),
    shape=st.lists(st.integers(0, 4), max_size=3).map(tuple),
    seed=seeds,
)
def test_clip_with_input_bounds(
    dtype: Any, bounds: tuple[Any, Any], opset: int, shape: tuple[int, ...], seed: int
) -> None:
    if opset == 11 and np.dtype(dtype).kind != "f":
        opset = 12  # integer Clip arrived in opset 12
    if np.dtype(dtype).kind == "u":
        bounds = tuple(None if b is None else abs(b) for b in bounds)
    low, high = (None if b is None else np.array(b, dtype=dtype) for b in bounds)
    x = random_array(np.random.default_rng(seed), shape, dtype, -6 if np.dtype(dtype).kind != "u" else 0, 6)
    check_against_reference("Clip", [x, low, high], opset=opset)


def test_clip_min_above_max_gives_max() -> None:
    x = np.array([-2.0, 0.0, 5.0], dtype=np.float32)
    (out,) = check_against_reference("Clip", [x, np.array(3, np.float32), np.array(1, np.float32)], opset=13)
    np.testing.assert_array_equal(out, np.ones(3, np.float32))


@pytest.mark.parametrize("attrs", [{}, {"min": -1.0}, {"max": 0.5}, {"min": -0.5, "max": 0.5}])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_clip_opset6_attributes(attrs: dict[str, float], dtype: Any) -> None:
    x = np.linspace(-2, 2, 9).astype(dtype)
    check_against_reference("Clip", [x], opset=6, **attrs)


@settings(max_examples=25, deadline=None)
@given(
    direction=st.sampled_from(["LEFT", "RIGHT"]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64]),
    shapes=pairs_of_shapes,
    seed=seeds,
)
def test_bitshift_unsigned(direction: str, dtype: Any, shapes: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = random_array(rng, shapes.input_shapes[0], dtype, 0, 200)
    y = random_array(rng, shapes.input_shapes[1], dtype, 0, np.dtype(dtype).itemsize * 8 - 1)
    check_against_reference("BitShift", [x, y], opset=11, direction=direction)


def test_bitshift_signed_and_out_of_range_shifts_at_opset_28() -> None:
    x = np.array([-128, -7, 5, 64, 1, -1], dtype=np.int8)
    y = np.array([1, 1, 9, 1, -1, 8], dtype=np.int8)
    (right,) = run_ours(single_op_model("BitShift", [x, y], opset=28, direction="RIGHT"), [x, y])
    np.testing.assert_array_equal(right, np.array([-64, -4, 0, 32, 0, -1], dtype=np.int8))
    (left,) = run_ours(single_op_model("BitShift", [x, y], opset=28, direction="LEFT"), [x, y])
    np.testing.assert_array_equal(left, np.array([0, -14, 0, -128, 0, 0], dtype=np.int8))


@settings(max_examples=25, deadline=None)
@given(
    op=st.sampled_from(["BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot"]),
    dtype=st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64]),
    shapes=pairs_of_shapes,
    seed=seeds,
)
def test_bitwise_ops(op: str, dtype: Any, shapes: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    inputs = [random_array(rng, shape, dtype, -100, 100) for shape in shapes.input_shapes]
    check_against_reference(op, inputs[:1] if op == "BitwiseNot" else inputs)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("detect", [(1, 1), (1, 0), (0, 1), (0, 0)])
def test_isnan_and_isinf(dtype: Any, detect: tuple[int, int]) -> None:
    x = np.array([[np.nan, np.inf, -np.inf], [0.0, -1.5, 3.0]], dtype=dtype)
    check_against_reference("IsNaN", [x], out_dtypes=[np.bool_])
    check_against_reference("IsInf", [x], out_dtypes=[np.bool_], detect_negative=detect[0], detect_positive=detect[1])
