"""ai.onnx.ml encoders and feature transforms (ml.py) against onnxruntime, which implements the whole domain:
LabelEncoder, CategoryMapper, OneHotEncoder, DictVectorizer, CastMap, ZipMap, ArrayFeatureExtractor,
Binarizer, Normalizer, Scaler, Imputer and FeatureVectorizer, on hypothesis-drawn inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument
from onnxforge.runtime.kernels import ml

F, D, I64, S = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.STRING


def tensor(name: str, elem: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, None)


def map_of(name: str, key: int, value: int) -> onnx.ValueInfoProto:
    return helper.make_value_info(name, helper.make_map_type_proto(key, helper.make_tensor_type_proto(value, [])))


def ml_model(
    op: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto], version: int = 1, **attrs: Any
) -> bytes:
    node = helper.make_node(op, [v.name for v in inputs], [v.name for v in outputs], domain="ai.onnx.ml", **attrs)
    proto = helper.make_model(
        helper.make_graph([node], "g", inputs, outputs),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", version)],
    )
    proto.ir_version = 9
    return proto.SerializeToString()


def same(got: Any, want: Any, tol: float = 1e-6) -> None:
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            same(g, w, tol)
        return
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)
        np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=tol, atol=tol)
        return
    assert isinstance(got, np.ndarray)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.dtype.kind in "OU":
        assert got.dtype == object and got.tolist() == want.tolist()
    else:
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def untyped_maps(model: bytes) -> bytes:
    """The model with map-typed graph outputs left untyped: onnx-ir 1.1 cannot load map types."""
    proto = onnx.load_from_string(model)
    for value in proto.graph.output:
        kind = value.type.WhichOneof("value")
        if kind == "map_type" or (kind == "sequence_type" and value.type.sequence_type.elem_type.HasField("map_type")):
            value.type.Clear()
    return proto.SerializeToString()


def against_ort(model: bytes, feed: dict[str, Any], tol: float = 1e-6) -> list[Any]:
    ours = InferenceSession(untyped_maps(model)).run(None, feed)
    theirs = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)
    for got, want in zip(ours, theirs):
        same(got, want, tol)
    return ours


def strings(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


KEYS = {"strings": ["a", "b", "c", "e"], "int64s": [3, -1, 7, 8], "floats": [0.5, -2.0, float("nan"), 9.0]}
VALUES = {"strings": ["x", "y", "z", "w"], "int64s": [10, 20, 30, 40], "floats": [1.5, 2.5, -3.0, 4.0]}
ELEM = {"strings": S, "int64s": I64, "floats": F}


def key_input(kind: str, picks: list[int]) -> np.ndarray:
    pool: list[Any] = {"strings": ["a", "b", "c", "q"], "int64s": [3, -1, 7, 5], "floats": [0.5, -2.0, np.nan, 1.0]}[
        kind
    ]
    chosen = [pool[i] for i in picks]
    return (
        strings(chosen) if kind == "strings" else np.array(chosen, dtype=np.int64 if kind == "int64s" else np.float32)
    )


@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from(sorted(KEYS)),
    st.sampled_from(sorted(VALUES)),
    st.lists(st.integers(0, 3), min_size=1, max_size=8),
    st.booleans(),
    st.sampled_from([2, 4]),
)
def test_label_encoder_matches_onnxruntime(key: str, value: str, picks: list[int], default: bool, version: int) -> None:
    attrs: dict[str, Any] = {f"keys_{key}": KEYS[key], f"values_{value}": VALUES[value]}
    if default:
        attrs[{"strings": "default_string", "int64s": "default_int64", "floats": "default_float"}[value]] = {
            "strings": "??",
            "int64s": 99,
            "floats": 9.5,
        }[value]
    model = ml_model("LabelEncoder", [tensor("x", ELEM[key])], [tensor("y", ELEM[value])], version, **attrs)
    if version == 2 and key == "floats":  # onnxruntime matches NaN keys from version 4 on; the spec text always
        picks = [p for p in picks if p != 2] or [0]
    against_ort(model, {"x": key_input(key, picks)})


def test_label_encoder_lets_the_last_repeated_key_win_as_the_spec_says() -> None:
    # onnxruntime keeps the first; the spec (and onnx's reference) the last
    model = ml_model(
        "LabelEncoder", [tensor("x", I64)], [tensor("y", I64)], 2, keys_int64s=[3, 3], values_int64s=[1, 2]
    )
    x = np.array([3, 4], np.int64)
    same(InferenceSession(model).run(None, {"x": x})[0], np.array([2, -1]))
    same(ReferenceEvaluator(onnx.load_from_string(model)).run(None, {"x": x})[0], np.array([2, -1]))


def test_label_encoder_4_takes_tensor_keys_values_and_default() -> None:
    keys = helper.make_tensor("k", TensorProto.INT32, [3], [1, 2, 3])
    values = helper.make_tensor("v", TensorProto.DOUBLE, [3], [0.5, 1.5, 2.5])
    default = helper.make_tensor("d", TensorProto.DOUBLE, [1], [-7.0])
    model = ml_model("LabelEncoder", [tensor("x", TensorProto.INT32)], [tensor("y", D)], 4,
                     keys_tensor=keys, values_tensor=values, default_tensor=default)  # fmt: skip
    x = np.array([[3, 9], [1, 2]], np.int32)
    same(InferenceSession(model).run(None, {"x": x})[0], np.array([[2.5, -7.0], [0.5, 1.5]]))


def test_label_encoder_1_maps_strings_to_indices_and_back() -> None:
    forward = ml_model("LabelEncoder", [tensor("x", S)], [tensor("y", I64)], classes_strings=["a", "b"])
    same(InferenceSession(forward).run(None, {"x": strings(["b", "z"])})[0], np.array([1, -1]))
    back = ml_model(
        "LabelEncoder", [tensor("x", I64)], [tensor("y", S)], classes_strings=["a", "b"], default_string="?"
    )
    same(InferenceSession(back).run(None, {"x": np.array([0, 5, 1])})[0], strings(["a", "?", "b"]))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=8), st.booleans())
def test_category_mapper_matches_onnxruntime(picks: list[int], to_int: bool) -> None:
    attrs = {"cats_strings": ["a", "b", "c"], "cats_int64s": [5, 6, 7], "default_int64": -9, "default_string": "?"}
    if to_int:
        model = ml_model("CategoryMapper", [tensor("x", S)], [tensor("y", I64)], **attrs)
        feed = {"x": strings([["a", "b", "c", "d", "e"][i] for i in picks])}
    else:
        model = ml_model("CategoryMapper", [tensor("x", I64)], [tensor("y", S)], **attrs)
        feed = {"x": np.array([[5, 6, 7, 8, 0][i] for i in picks], np.int64)}
    against_ort(model, feed)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=8), st.sampled_from([S, I64, F, D]))
def test_one_hot_encoder_matches_onnxruntime(picks: list[int], elem: int) -> None:
    if elem == S:
        model = ml_model("OneHotEncoder", [tensor("x", S)], [tensor("y", F)], cats_strings=["a", "b", "c"])
        x: np.ndarray = strings([["a", "b", "c", "d", "a"][i] for i in picks])
    else:
        model = ml_model("OneHotEncoder", [tensor("x", elem)], [tensor("y", F)], cats_int64s=[1, 2, 4])
        x = np.array([[1, 2, 4, 3, 2][i] for i in picks], dtype=helper.tensor_dtype_to_np_dtype(elem))
    against_ort(model, {"x": x.reshape(2, -1) if len(picks) % 2 == 0 else x})


def test_one_hot_encoder_refuses_unknown_values_without_zeros() -> None:
    model = ml_model("OneHotEncoder", [tensor("x", I64)], [tensor("y", F)], cats_int64s=[1, 2], zeros=0)
    with pytest.raises(InvalidArgument, match="categories"):
        InferenceSession(model).run(None, {"x": np.array([3], np.int64)})


def kernel_against_ort(fn: Any, model: bytes, feed: dict[str, Any], **attrs: Any) -> None:
    """The kernel called directly (a map-typed graph input does not load: onnx-ir 1.1 has no map type)."""
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    same(fn(*feed.values(), **attrs), want)


def test_dict_vectorizer_and_cast_map_match_onnxruntime() -> None:
    vocab = {"string_vocabulary": ["a", "b", "c"]}
    dv = ml_model("DictVectorizer", [map_of("m", S, F)], [tensor("y", F)], **vocab)
    kernel_against_ort(ml.DictVectorizer, dv, {"m": {"c": 2.0, "a": 1.5, "zz": 3.0}}, **vocab)
    ints = {"int64_vocabulary": [4, 2, 9]}
    dv_int = ml_model("DictVectorizer", [map_of("m", I64, F)], [tensor("y", F)], **ints)
    kernel_against_ort(ml.DictVectorizer, dv_int, {"m": {2: 0.25, 9: -1.0}}, **ints)
    # a declared double output keeps the values in double
    declared = ml.DictVectorizer({2: 0.1}, **ints, _output_dtypes=(np.dtype(np.float64),))
    same(declared, np.array([[0.0, 0.1, 0.0]]))
    for cast_to, elem in (("TO_FLOAT", F), ("TO_INT64", I64), ("TO_STRING", S)):
        for form in ("DENSE", "SPARSE"):
            attrs = {"cast_to": cast_to, "map_form": form, "max_map": 5}
            model = ml_model("CastMap", [map_of("m", I64, F)], [tensor("y", elem)], **attrs)
            kernel_against_ort(ml.CastMap, model, {"m": {3: 2.5, 0: -1.25, 1: 7.0}}, **attrs)
    # onnxruntime's Python binding cannot feed map(int64, string); strings parse like std::stof / std::stoll
    same(ml.CastMap({1: "2.5", 0: "-3"}), np.array([[-3.0, 2.5]], np.float32))
    same(ml.CastMap({1: "7", 0: "-3"}, cast_to="TO_INT64"), np.array([[-3, 7]], np.int64))


@pytest.mark.parametrize("labels", [{"classlabels_strings": ["a", "b", "c"]}, {"classlabels_int64s": [7, 8, 9]}])
def test_zip_map_matches_onnxruntime(labels: dict[str, list[Any]]) -> None:
    key = S if "classlabels_strings" in labels else I64
    out = helper.make_value_info(
        "z", helper.make_sequence_type_proto(helper.make_map_type_proto(key, helper.make_tensor_type_proto(F, [])))
    )
    model = ml_model("ZipMap", [tensor("x", F)], [out], **labels)
    result = against_ort(model, {"x": np.arange(6, dtype=np.float32).reshape(2, 3) / 7})
    assert isinstance(result[0], list) and isinstance(result[0][0], dict)


@settings(max_examples=20, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 5),
    st.lists(st.integers(0, 4), min_size=1, max_size=4),
    st.sampled_from([F, D, I64, S]),
)
def test_array_feature_extractor_matches_onnxruntime(rows: int, cols: int, picks: list[int], elem: int) -> None:
    data = np.arange(rows * cols).reshape(rows, cols)
    x = (
        strings([str(v) for v in data.reshape(-1)]).reshape(data.shape)
        if elem == S
        else data.astype(helper.tensor_dtype_to_np_dtype(elem))
    )
    model = ml_model("ArrayFeatureExtractor", [tensor("x", elem), tensor("i", I64)], [tensor("z", elem)])
    feed = {"x": x if rows > 1 else x[0], "i": np.array([p % cols for p in picks], np.int64)}
    against_ort(model, feed)


floats = st.lists(st.floats(-5, 5, width=32), min_size=6, max_size=6)


@settings(max_examples=20, deadline=None)
@given(floats, st.floats(-2, 2, width=32), st.sampled_from(["MAX", "L1", "L2"]))
def test_binarizer_and_normalizer_match_onnxruntime(values: list[float], threshold: float, norm: str) -> None:
    x = np.array(values, np.float32).reshape(2, 3)
    against_ort(ml_model("Binarizer", [tensor("x", F)], [tensor("y", F)], threshold=threshold), {"x": x})
    for elem in (F, D, I64):
        data = (x * 3).astype(helper.tensor_dtype_to_np_dtype(elem))
        against_ort(ml_model("Normalizer", [tensor("x", elem)], [tensor("y", F)], norm=norm), {"x": data}, 1e-5)


@settings(max_examples=20, deadline=None)
@given(floats, st.booleans(), st.sampled_from([F, D, I64]))
def test_scaler_matches_onnxruntime(values: list[float], per_feature: bool, elem: int) -> None:
    offset, scale = ([0.5, -1.0, 2.0], [2.0, 0.25, -1.0]) if per_feature else ([1.5], [3.0])
    model = ml_model("Scaler", [tensor("x", elem)], [tensor("y", F)], offset=offset, scale=scale)
    x = (np.array(values, np.float32).reshape(2, 3) * 4).astype(helper.tensor_dtype_to_np_dtype(elem))
    against_ort(model, {"x": x}, 1e-5)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, -2.5, np.nan]), min_size=6, max_size=6), st.booleans(), st.booleans())
def test_imputer_matches_onnxruntime(values: list[float], per_feature: bool, nan: bool) -> None:
    imputed = [9.0, 8.0, 7.0] if per_feature else [5.0]
    model = ml_model("Imputer", [tensor("x", F)], [tensor("y", F)], imputed_value_floats=imputed,
                     replaced_value_float=float("nan") if nan else 1.0)  # fmt: skip
    against_ort(model, {"x": np.array(values, np.float32).reshape(2, 3)})
    ints = ml_model("Imputer", [tensor("x", I64)], [tensor("y", I64)], imputed_value_int64s=[4], replaced_value_int64=0)
    against_ort(ints, {"x": np.nan_to_num(np.array(values)).astype(np.int64).reshape(2, 3)})


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=3),
    st.integers(1, 3),
    st.sampled_from([F, I64, D]),
)
def test_feature_vectorizer_matches_onnxruntime(widths: list[tuple[int, int]], batch: int, elem: int) -> None:
    inputs = [tensor(f"x{i}", elem) for i in range(len(widths))]
    model = ml_model("FeatureVectorizer", inputs, [tensor("y", F)], inputdimensions=[w for _, w in widths])
    feed = {
        v.name: (np.arange(batch * have).reshape(batch, have) + i).astype(
            helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)
        )
        for i, (v, (have, _)) in enumerate(zip(inputs, widths))
    }
    against_ort(model, feed)
