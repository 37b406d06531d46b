"""Fixtures for the CLI tests: the bundled model and its test split."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def model_path() -> Path:
    return Path(str(resources.files("onnxforge").joinpath("data", "digits_cnn.onnx")))


@pytest.fixture(scope="session")
def test_split() -> tuple[np.ndarray, np.ndarray]:
    with np.load(Path(str(resources.files("onnxforge").joinpath("data", "digits_test.npz")))) as data:
        return data["images"], data["labels"]
