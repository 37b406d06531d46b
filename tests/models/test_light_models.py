"""The 9 "light" models onnx ships reproduce their shipped expected outputs, and agree with onnxruntime.

Inputs are what onnx's own backend runner feeds them (``arange(n) / n`` in the declared shape), so the
shipped ``light_*_output_0.pb`` are the reference.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxforge import InferenceSession

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = sorted(p.stem for p in LIGHT_DIR.glob("light_*.onnx") if not p.stem.endswith("_output_0"))


def dummy_input(value_info: onnx.ValueInfoProto) -> np.ndarray:
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in value_info.type.tensor_type.shape.dim)
    count = int(np.prod(shape))
    return (np.arange(count).reshape(shape) / count).astype(np.float32)


def feeds_for(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    initializers = {t.name for t in model.graph.initializer}
    return {vi.name: dummy_input(vi) for vi in model.graph.input if vi.name not in initializers}


def test_all_nine_light_models_are_found() -> None:
    assert len(MODELS) == 9, MODELS


@pytest.mark.parametrize("name", MODELS)
def test_light_model_matches_shipped_output_and_ort(name: str) -> None:
    path = LIGHT_DIR / f"{name}.onnx"
    model = onnx.load(str(path))
    expected = numpy_helper.to_array(onnx.load_tensor(str(LIGHT_DIR / f"{name}_output_0.pb")))
    feeds = feeds_for(model)
    (ours,) = InferenceSession(str(path)).run(None, feeds)
    assert ours.shape == expected.shape and ours.dtype == expected.dtype
    np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-5)

    ort = pytest.importorskip("onnxruntime")
    if getattr(ort, "__name__", "") != "onnxruntime" or "onnxforge" in os.path.dirname(ort.__file__ or ""):
        pytest.skip("onnxruntime is shimmed in this process")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    (theirs,) = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-5)
