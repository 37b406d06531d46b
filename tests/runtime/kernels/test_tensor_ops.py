"""Creation and conversion kernels (tensor_ops.py): ConstantOfShape, EyeLike, Range, OneHot, Trilu, Dropout,
Cast and CastLike, against onnx's reference evaluator and onnxruntime's documented string formats."""

from __future__ import annotations

import math
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

Inputs = list[tuple[str, np.ndarray | None]]


def build(
    op: str, inputs: Inputs, attrs: dict[str, Any] | None = None, outputs: int = 1, opset: int = 19
) -> onnx.ModelProto:
    names = [name if value is not None else "" for name, value in inputs]
    while names and not names[-1]:
        names.pop()
    out_names = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names, out_names, **(attrs or {}))
    graph_inputs = [
        helper.make_tensor_value_info(
            name, TensorProto.STRING if value.dtype == object else helper.np_dtype_to_tensor_dtype(value.dtype), None
        )
        for name, value in inputs
        if value is not None
    ]
    graph_outputs = [helper.make_value_info(name, onnx.TypeProto()) for name in out_names]
    proto = helper.make_model(
        helper.make_graph([node], "g", graph_inputs, graph_outputs), opset_imports=[helper.make_opsetid("", opset)]
    )
    proto.ir_version = 9
    return proto


def feed_of(inputs: Inputs) -> dict[str, np.ndarray]:
    return {name: value for name, value in inputs if value is not None}


def run(proto: onnx.ModelProto, inputs: Inputs) -> list[np.ndarray]:
    return InferenceSession(proto.SerializeToString()).run(None, feed_of(inputs))


def check(
    op: str, inputs: Inputs, attrs: dict[str, Any] | None = None, outputs: int = 1, opset: int = 19
) -> list[np.ndarray]:
    proto = build(op, inputs, attrs, outputs, opset)
    ours = run(proto, inputs)
    expected = ReferenceEvaluator(proto).run(None, feed_of(inputs))
    for got, want in zip(ours, expected):
        want = np.asarray(want)
        assert isinstance(got, np.ndarray)
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        assert got.shape == want.shape, (got.shape, want.shape)
        if got.dtype.kind in "fc" or got.dtype.kind == "V":
            np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))
        else:
            np.testing.assert_array_equal(got, want)
    return ours


def i64(values: Any) -> np.ndarray:
    return np.array(values, dtype=np.int64)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=3), st.sampled_from([None, np.float32, np.int64, np.bool_, np.float16]))
def test_constant_of_shape_matches_reference(shape: list[int], dtype: Any) -> None:
    attrs = {} if dtype is None else {"value": onnx.numpy_helper.from_array(np.array([3], dtype=dtype))}
    check("ConstantOfShape", [("shape", i64(shape))], attrs)


def test_constant_of_shape_refuses_absurd_sizes() -> None:
    inputs: Inputs = [("shape", i64([2**30, 2**30]))]
    with pytest.raises(InvalidArgument, match=r"requested shape \[1073741824, 1073741824\]"):
        run(build("ConstantOfShape", inputs), inputs)
    inputs = [("shape", i64([3, -1]))]
    with pytest.raises(InvalidArgument, match="negative dimension"):
        run(build("ConstantOfShape", inputs), inputs)


@settings(max_examples=20, deadline=None)
@given(
    st.integers(0, 4),
    st.integers(0, 4),
    st.integers(-5, 5),
    st.sampled_from([None, TensorProto.INT32, TensorProto.DOUBLE, TensorProto.BOOL]),
)
def test_eye_like_matches_reference(rows: int, cols: int, k: int, dtype: int | None) -> None:
    attrs: dict[str, Any] = {"k": k} if dtype is None else {"k": k, "dtype": dtype}
    check("EyeLike", [("x", np.zeros((rows, cols), np.float32))], attrs)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(-20, 20),
    st.integers(-20, 20),
    st.integers(-7, 7).filter(bool),
    st.sampled_from([np.int32, np.int64, np.int16]),
)
def test_range_of_integers_matches_reference(start: int, limit: int, delta: int, dtype: Any) -> None:
    (out,) = check(
        "Range", [("a", np.array(start, dtype)), ("b", np.array(limit, dtype)), ("d", np.array(delta, dtype))]
    )
    assert out.tolist() == list(range(start, limit, delta))


@settings(max_examples=25, deadline=None)
@given(
    st.floats(-10, 10, width=32),
    st.floats(-10, 10, width=32),
    st.floats(0.25, 3, width=32),
    st.booleans(),
    st.sampled_from([np.float32, np.float64]),
)
def test_range_of_floats_matches_reference(start: float, limit: float, step: float, down: bool, dtype: Any) -> None:
    delta = -step if down else step
    check("Range", [("a", np.array(start, dtype)), ("b", np.array(limit, dtype)), ("d", np.array(delta, dtype))])


def test_range_errors() -> None:
    inputs: Inputs = [("a", i64(0)), ("b", i64(5)), ("d", i64(0))]
    with pytest.raises(InvalidArgument, match="delta must not be 0"):
        run(build("Range", inputs), inputs)
    inputs = [("a", i64(0)), ("b", i64(2**62)), ("d", i64(1))]
    with pytest.raises(InvalidArgument, match=r"requested shape \[4611686018427387904\]"):
        run(build("Range", inputs), inputs)


def test_range_float16_uses_the_stash_type() -> None:
    inputs: Inputs = [
        ("a", np.array(2040, np.float16)),
        ("b", np.array(2050, np.float16)),
        ("d", np.array(1, np.float16)),
    ]
    (out,) = run(build("Range", inputs, opset=27), inputs)
    # start + i * delta in float32, rounded once: repeated float16 additions would stall at 2048
    assert (
        out.dtype == np.float16 and out.tolist() == np.arange(2040, 2050, dtype=np.float32).astype(np.float16).tolist()
    )


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(-6, 6), min_size=0, max_size=6),
    st.integers(1, 5),
    st.data(),
    st.sampled_from([np.int64, np.int32, np.float32]),
    st.sampled_from([np.float32, np.int64]),
)
def test_one_hot_matches_reference(
    flat: list[int], depth: int, draw: st.DataObject, index_dtype: Any, value_dtype: Any
) -> None:
    shape = [len(flat)] if draw.draw(st.booleans()) or len(flat) % 2 else [2, len(flat) // 2]
    indices = np.array(flat, dtype=index_dtype).reshape(shape)
    axis = draw.draw(st.integers(-len(shape) - 1, len(shape)))
    values = np.array([2, 9], dtype=value_dtype)
    check("OneHot", [("i", indices), ("depth", np.array(depth, np.int64)), ("v", values)], {"axis": axis})


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=3), st.none() | st.integers(-5, 5), st.integers(0, 1))
def test_trilu_matches_reference(shape: list[int], k: int | None, upper: int) -> None:
    x = (np.arange(math.prod(shape)) + 1).astype(np.float32).reshape(shape)
    check("Trilu", [("x", x), ("k", None if k is None else i64(k))], {"upper": upper})


@pytest.mark.parametrize(("opset", "mask_dtype"), [(7, np.float32), (10, np.bool_), (13, np.bool_)])
def test_dropout_in_inference_is_identity_with_a_full_mask(opset: int, mask_dtype: Any) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out, mask = run(
        build("Dropout", [("x", x)], {"ratio": 0.3} if opset < 12 else {}, outputs=2, opset=opset), [("x", x)]
    )
    np.testing.assert_array_equal(out, x)
    assert mask.dtype == mask_dtype and mask.shape == x.shape and bool(mask.all())


@settings(max_examples=15, deadline=None)
@given(st.floats(0.0, 0.9), st.integers(0, 1000), st.sampled_from([np.float32, np.float64]))
def test_dropout_training_matches_seeded_reference(ratio: float, seed: int, dtype: Any) -> None:
    x = (np.arange(40) + 1).astype(dtype).reshape(4, 10)
    inputs: Inputs = [("x", x), ("r", np.array(ratio, dtype)), ("t", np.array(True))]
    out, mask = check("Dropout", inputs, {"seed": seed}, outputs=2)
    kept = mask.astype(bool)
    np.testing.assert_allclose(out[kept], x[kept] / (1 - dtype(ratio)), rtol=1e-6)
    assert not out[~kept].any()


def test_dropout_training_statistics_without_seed() -> None:
    x = np.ones((200, 200), np.float32)
    inputs: Inputs = [("x", x), ("r", np.array(0.25, np.float32)), ("t", np.array(True))]
    out, mask = run(build("Dropout", inputs, outputs=2), inputs)
    assert abs(mask.mean() - 0.75) < 0.02
    np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.75], rtol=1e-6)


numeric = [np.float32, np.float64, np.float16, np.int8, np.int32, np.int64, np.uint8, np.bool_]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(numeric + [ml_dtypes.bfloat16]), st.sampled_from(numeric + [ml_dtypes.bfloat16]), st.data())
def test_cast_between_numeric_types_matches_reference(source: Any, target: Any, draw: st.DataObject) -> None:
    low = 0 if np.dtype(target).kind in "ub" or np.dtype(source).kind in "ub" else -100
    values = draw.draw(st.lists(st.integers(low, 100), min_size=1, max_size=6))
    x = np.array(values).astype(source)
    if np.dtype(source).kind == "f" and draw.draw(st.booleans()):
        x = (x / 4).astype(source)  # fractions truncate toward zero into integers
    to = helper.np_dtype_to_tensor_dtype(np.dtype(target))
    check("Cast", [("x", x)], {"to": to})
    check("CastLike", [("x", x), ("like", np.zeros(1, target))])
    check("Cast", [("x", x)], {"to": to}, opset=13)


float8 = [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E5M2FNUZ]


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(float8), st.integers(0, 1), st.sampled_from([np.float32, np.float16]))
def test_cast_to_float8_saturates_per_spec(to: int, saturate: int, source: Any) -> None:
    x = np.array([0.0, -0.0, 1.5, -3.25, 300.0, 1e4, -6e4, np.inf, -np.inf, np.nan], dtype=source)
    (out,) = check("Cast", [("x", x)], {"to": to, "saturate": saturate})
    if saturate:
        assert np.isfinite(out.astype(np.float32)[:-1]).all()  # inf and overflow clamp to +-max


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        (
            np.float32,
            [1.0, 0.1, np.nan, np.inf, -np.inf, 1e20, 1.5e-7],
            ["1", "0.1", "NaN", "INF", "-INF", "1e+20", "1.5000001e-07"],
        ),
        (np.float64, [1 / 3, -2.5], ["0.33333333", "-2.5"]),
        (np.int64, [-5, 7], ["-5", "7"]),
        (np.bool_, [True, False], ["1", "0"]),
    ],
)
def test_cast_to_string_follows_onnxruntime(source: Any, values: list[Any], expected: list[str]) -> None:
    x = np.array(values, dtype=source)
    (out,) = run(build("Cast", [("x", x)], {"to": TensorProto.STRING}), [("x", x)])
    assert out.dtype == object and out.tolist() == expected


def test_cast_from_string() -> None:
    x = np.array(["1.5", "-INF", "nan", "+inf", "1e3", "Inf"], dtype=object)
    (out,) = run(build("Cast", [("x", x)], {"to": TensorProto.FLOAT}), [("x", x)])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([1.5, -np.inf, np.nan, np.inf, 1000.0, np.inf], np.float32))
    x = np.array(["15", "-3", "100.5"], dtype=object)
    (out,) = run(build("Cast", [("x", x)], {"to": TensorProto.INT32}), [("x", x)])
    assert out.dtype == np.int32 and out.tolist() == [15, -3, 100]
    x = np.array(["hello"], dtype=object)
    with pytest.raises(InvalidArgument, match="cannot convert the strings"):
        run(build("Cast", [("x", x)], {"to": TensorProto.DOUBLE}), [("x", x)])


def test_cast_like_to_string_and_back() -> None:
    x = np.array([2.5, -1.0], np.float32)
    like = np.array(["a"], dtype=object)
    (out,) = run(build("CastLike", [("x", x), ("like", like)]), [("x", x), ("like", like)])
    assert out.tolist() == ["2.5", "-1"]
