"""Models with map-typed inputs and outputs (scikit-learn's, via skl2onnx): they load, run and describe
their I/O as onnxruntime does, though onnx-ir cannot read map types (see onnxforge.ir.map_types)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxforge import InferenceSession

F, I64, S = TensorProto.FLOAT, TensorProto.INT64, TensorProto.STRING
ML = helper.make_opsetid("ai.onnx.ml", 1)


def _classifier(labels: list[int] | list[str]) -> onnx.ModelProto:
    """skl2onnx's default classifier layout: LinearClassifier, then ZipMap into seq(map(label, float))."""
    label_attr = {"classlabels_ints": labels} if isinstance(labels[0], int) else {"classlabels_strings": labels}
    zip_attr = {"classlabels_int64s": labels} if isinstance(labels[0], int) else {"classlabels_strings": labels}
    key, label_type = (I64, I64) if isinstance(labels[0], int) else (S, S)
    nodes = [
        helper.make_node(
            "LinearClassifier",
            ["x"],
            ["label", "prob"],
            domain="ai.onnx.ml",
            coefficients=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            intercepts=[0.1, 0.2, 0.3],
            post_transform="SOFTMAX",
            **label_attr,
        ),
        helper.make_node("ZipMap", ["prob"], ["probabilities"], domain="ai.onnx.ml", **zip_attr),
    ]
    probabilities = helper.make_sequence_type_proto(
        helper.make_map_type_proto(key, helper.make_tensor_type_proto(F, []))
    )
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", F, [None, 2])],
        [
            helper.make_tensor_value_info("label", label_type, [None]),
            helper.make_value_info("probabilities", probabilities),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), ML])


def _expected_probabilities(x: np.ndarray) -> np.ndarray:
    scores = x @ np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).T + [0.1, 0.2, 0.3]
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("labels", [[0, 1, 2], ["cat", "dog", "eel"]])
def test_a_zipmap_classifier_loads_and_returns_a_list_of_dicts(labels: list) -> None:
    model = _classifier(labels)
    x = np.array([[1.0, -1.0], [0.5, 0.25]], np.float32)

    sess = InferenceSession(model.SerializeToString())
    label, probabilities = sess.run(None, {"x": x})

    expected = _expected_probabilities(x.astype(np.float64))
    assert list(label) == [labels[i] for i in expected.argmax(axis=1)]
    assert isinstance(probabilities, list) and len(probabilities) == 2
    for row, want in zip(probabilities, expected):
        assert list(row) == labels
        np.testing.assert_allclose([row[k] for k in labels], want, rtol=1e-5)
    key = "int64" if isinstance(labels[0], int) else "string"
    assert [(o.name, o.type, o.shape) for o in sess.get_outputs()] == [
        ("label", f"tensor({key})", [None]),
        ("probabilities", f"seq(map({key},tensor(float)))", []),
    ]
    # The caller's model keeps its declared map type.
    assert model.graph.output[1].type.sequence_type.elem_type.HasField("map_type")


def _dict_vectorizer() -> onnx.ModelProto:
    features = helper.make_map_type_proto(S, helper.make_tensor_type_proto(F, []))
    graph = helper.make_graph(
        [
            helper.make_node(
                "DictVectorizer", ["features"], ["v"], domain="ai.onnx.ml", string_vocabulary=["a", "b", "c"]
            )
        ],
        "vectorizer",
        [helper.make_value_info("features", features)],
        [helper.make_tensor_value_info("v", F, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), ML])


def test_a_map_input_is_fed_as_a_dict() -> None:
    sess = InferenceSession(_dict_vectorizer().SerializeToString())

    (v,) = sess.run(None, {"features": {"a": 1.0, "c": 3.0}})

    np.testing.assert_array_equal(v, [[1.0, 0.0, 3.0]])
    assert v.dtype == np.float32
    assert [(i.name, i.type, i.shape) for i in sess.get_inputs()] == [("features", "map(string,tensor(float))", [])]


@pytest.mark.parametrize("make", [_dict_vectorizer, lambda: _classifier([0, 1, 2])])
def test_same_as_onnxruntime(make) -> None:
    ort = pytest.importorskip("onnxruntime")
    data = make().SerializeToString()
    ours, theirs = InferenceSession(data), ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = (
        {"features": {"a": 1.0, "c": 3.0}} if ours.get_inputs()[0].name == "features" else {"x": np.float32([[1, -1]])}
    )
    for got, want in zip(ours.run(None, feeds), theirs.run(None, feeds)):
        if isinstance(want, list):
            assert [list(row) for row in got] == [list(row) for row in want]
            np.testing.assert_allclose(
                [list(row.values()) for row in got], [list(row.values()) for row in want], rtol=1e-5
            )
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5)
    for mine, ort_arg in zip(ours.get_inputs() + ours.get_outputs(), theirs.get_inputs() + theirs.get_outputs()):
        assert (mine.name, mine.type) == (ort_arg.name, ort_arg.type)
        if not mine.type.startswith("tensor("):  # a tensor of unknown rank: None here, [] in onnxruntime
            assert mine.shape == ort_arg.shape == []
