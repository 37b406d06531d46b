"""The bundled digits CNN: accurate on its bundled test split through onnxforge, and equal to onnxruntime."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxforge

DATA = resources.files("onnxforge").joinpath("data")


@pytest.fixture(scope="module")
def model_path() -> Path:
    return Path(str(DATA.joinpath("digits_cnn.onnx")))


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray]:
    with np.load(Path(str(DATA.joinpath("digits_test.npz")))) as data:
        return data["images"], data["labels"]


@pytest.fixture(scope="module")
def onnxforge_logits(model_path: Path, split: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    (logits,) = onnxforge.InferenceSession(model_path).run(None, {"input": split[0]})
    return logits


def test_bundled_files_have_the_documented_interface(model_path: Path, split: tuple[np.ndarray, np.ndarray]) -> None:
    model = onnx.load(str(model_path))
    onnx.checker.check_model(model, full_check=True)
    assert model_path.stat().st_size < 512 * 1024
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    (graph_input,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert (graph_input.name, dims) == ("input", ["batch", 1, 8, 8])
    assert [o.name for o in model.graph.output] == ["logits"]
    images, labels = split
    assert images.dtype == np.float32 and images.shape[1:] == (1, 8, 8) and 300 <= len(images) <= 400
    assert labels.dtype == np.int64 and labels.shape == (len(images),)
    assert set(labels.tolist()) == set(range(10))  # stratified: every digit is tested
    assert 0.0 <= images.min() and images.max() <= 1.0  # normalised as in training (pixels / 16)


def test_accuracy_through_onnxforge(onnxforge_logits: np.ndarray, split: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = split
    assert onnxforge_logits.shape == (len(images), 10) and onnxforge_logits.dtype == np.float32
    accuracy = float((onnxforge_logits.argmax(axis=1) == labels).mean())
    assert accuracy >= 0.95, f"accuracy {accuracy:.4f}"


def test_outputs_match_onnxruntime(
    model_path: Path, split: tuple[np.ndarray, np.ndarray], onnxforge_logits: np.ndarray
) -> None:
    ort = pytest.importorskip("onnxruntime")
    if ort.InferenceSession is onnxforge.InferenceSession:
        pytest.skip("`onnxruntime` is onnxforge's shim in this process; there is no real ORT to compare with")
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"input": split[0]})
    np.testing.assert_allclose(onnxforge_logits, expected, rtol=1e-3, atol=1e-4)


def test_batch_one_matches_full_batch(
    model_path: Path, split: tuple[np.ndarray, np.ndarray], onnxforge_logits: np.ndarray
) -> None:
    session = onnxforge.InferenceSession(model_path)
    for index in (0, 17, len(split[0]) - 1):
        (row,) = session.run(None, {"input": split[0][index : index + 1]})
        np.testing.assert_allclose(row[0], onnxforge_logits[index], rtol=1e-5, atol=1e-5)
