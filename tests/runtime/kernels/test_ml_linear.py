"""Linear models and SVMs (ml_linear.py) against onnxruntime: LinearRegressor, LinearClassifier (binary and
multi-class, int and string labels), SVMRegressor and SVMClassifier (every kernel, with and without
probabilities, one-vs-one and liblinear layouts), under every post-transform."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from onnxforge import InferenceSession

TRANSFORMS = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]
KERNELS = ["LINEAR", "POLY", "RBF", "SIGMOID"]


def ml_model(op: str, attrs: dict[str, Any], outputs: list[tuple[str, int]], elem: int = TensorProto.FLOAT) -> bytes:
    node = helper.make_node(op, ["x"], [name for name, _ in outputs], domain="ai.onnx.ml", **attrs)
    proto = helper.make_model(
        helper.make_graph(
            [node],
            "g",
            [helper.make_tensor_value_info("x", elem, None)],
            [helper.make_tensor_value_info(name, kind, None) for name, kind in outputs],
        ),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)],
    )
    proto.ir_version = 9
    return proto.SerializeToString()


def compare(model: bytes, x: np.ndarray, tol: float = 1e-4) -> list[np.ndarray]:
    ours = InferenceSession(model).run(None, {"x": x})
    theirs = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for got, want in zip(ours, theirs):
        assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
        if want.dtype == object or want.dtype.kind in "iu":
            assert got.tolist() == want.tolist()
        else:
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    return ours


def data(seed: int, rows: int, cols: int, dtype: Any = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, cols)).round(2).astype(dtype)


def labelled(classes: int, strings: bool) -> tuple[dict[str, Any], int]:
    if strings:
        return {"classlabels_strings": [f"k{c}" for c in range(classes)]}, TensorProto.STRING
    return {"classlabels_ints": [3 + 2 * c for c in range(classes)]}, TensorProto.INT64


@settings(max_examples=20, deadline=None)
@given(
    st.integers(0, 999),
    st.integers(1, 3),
    st.sampled_from(TRANSFORMS),
    st.booleans(),
    st.sampled_from([np.float32, np.float64, np.int64]),
)
def test_linear_regressor_matches_onnxruntime(seed: int, targets: int, transform: str, bias: bool, dtype: Any) -> None:
    rng = np.random.default_rng(seed)
    attrs: dict[str, Any] = {"coefficients": rng.normal(size=targets * 4).round(2).tolist(), "targets": targets}
    attrs["post_transform"] = transform
    if bias:
        attrs["intercepts"] = rng.normal(size=targets).round(2).tolist()
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    if dtype != np.float32:  # onnxruntime only has a float32 LinearRegressor
        ours = InferenceSession(ml_model("LinearRegressor", attrs, [("y", TensorProto.FLOAT)], elem)).run(
            None, {"x": data(seed, 5, 4, dtype)}
        )
        want = compare(
            ml_model("LinearRegressor", attrs, [("y", TensorProto.FLOAT)]), data(seed, 5, 4, dtype).astype(np.float32)
        )
        np.testing.assert_allclose(ours[0], want[0], rtol=1e-6)
    else:
        compare(ml_model("LinearRegressor", attrs, [("y", TensorProto.FLOAT)]), data(seed, 5, 4))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 999), st.sampled_from([1, 2, 3, 4]), st.sampled_from(TRANSFORMS), st.booleans())
def test_linear_classifier_matches_onnxruntime(seed: int, classes: int, transform: str, strings: bool) -> None:
    rng = np.random.default_rng(seed)
    labels, kind = labelled(max(classes, 2), strings)  # one score column: a binary model with two labels
    attrs: dict[str, Any] = {
        "coefficients": rng.normal(size=classes * 3).round(2).tolist(),
        "intercepts": rng.normal(size=classes).round(2).tolist(),
        "post_transform": transform,
        **labels,
    }
    if classes == 1 and transform == "PROBIT":
        attrs["post_transform"] = "NONE"  # onnxruntime writes the probit of one column over the wrong rows
    compare(ml_model("LinearClassifier", attrs, [("label", kind), ("scores", TensorProto.FLOAT)]), data(seed, 6, 3))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 999), st.sampled_from(KERNELS), st.booleans(), st.booleans())
def test_svm_regressor_matches_onnxruntime(seed: int, kernel: str, with_vectors: bool, one_class: bool) -> None:
    rng = np.random.default_rng(seed)
    supports = 4 if with_vectors else 0
    attrs: dict[str, Any] = {
        "coefficients": rng.normal(size=supports or 3).round(2).tolist(),
        "rho": [round(float(rng.normal()), 2)],
        "kernel_type": kernel,
        "kernel_params": [0.3, 0.5, 2.0],
        "n_supports": supports,
        "one_class": int(one_class),
    }
    if with_vectors:
        attrs["support_vectors"] = rng.normal(size=supports * 3).round(2).tolist()
    compare(ml_model("SVMRegressor", attrs, [("y", TensorProto.FLOAT)]), data(seed, 6, 3))


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 999),
    st.sampled_from([2, 3, 4]),
    st.sampled_from(KERNELS),
    st.sampled_from(TRANSFORMS),
    st.sampled_from(["svc", "proba", "linear"]),
    st.booleans(),
)
def test_svm_classifier_matches_onnxruntime(
    seed: int, classes: int, kernel: str, transform: str, layout: str, strings: bool
) -> None:
    rng = np.random.default_rng(seed)
    labels, kind = labelled(classes, strings)
    pairs = classes * (classes - 1) // 2
    attrs: dict[str, Any] = {"kernel_type": kernel, "kernel_params": [0.4, 0.2, 3.0], "post_transform": transform}
    if layout == "linear":
        attrs.update(coefficients=rng.normal(size=classes * 3).round(2).tolist(), rho=[0.1])
    else:
        per_class = [int(v) for v in rng.integers(1, 3, size=classes)]
        total = sum(per_class)
        attrs.update(
            vectors_per_class=per_class,
            support_vectors=rng.normal(size=total * 3).round(2).tolist(),
            coefficients=rng.normal(size=(classes - 1) * total).round(2).tolist(),
            rho=rng.normal(size=pairs).round(2).tolist(),
        )
        if layout == "proba":
            attrs.update(
                prob_a=(-rng.random(pairs) - 0.5).round(2).tolist(), prob_b=rng.normal(size=pairs).round(2).tolist()
            )
    if classes == 2 and layout == "svc" and transform == "PROBIT":
        attrs["post_transform"] = "NONE"  # onnxruntime leaves the second score column unwritten
    model = ml_model("SVMClassifier", {**attrs, **labels}, [("label", kind), ("scores", TensorProto.FLOAT)])
    compare(model, data(seed, 7, 3), 2e-3 if layout == "proba" else 1e-4)
