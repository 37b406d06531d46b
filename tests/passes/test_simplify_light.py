"""onnx's light models simplify to fewer nodes than onnxsim's output and match the original on random inputs.

onnxsim 0.8.1 gives 415 -> 123 nodes on light_resnet50 and 105 -> 66 on light_squeezenet (it keeps the
inference Dropout); ``benchmarks/compare_onnxsim.py`` compares all six models side by side.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from onnxforge.passes import simplify

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"

# model -> (nodes before, nodes after with onnxforge, onnxsim's nodes after)
EXPECTED = {"resnet50": (415, 123, 123), "squeezenet": (105, 65, 66)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_light_model_simplifies_and_matches(name: str) -> None:
    before, after, onnxsim_after = EXPECTED[name]
    simplified, report = simplify(str(LIGHT_DIR / f"light_{name}.onnx"), check_n=1)
    assert report.verified, report.verification
    assert not report.dropped_passes and not report.failed_passes
    assert report.nodes_before == before
    assert report.nodes_after == len(simplified.graph.node) == after
    assert after <= onnxsim_after
    assert report.after.ops["ConstantOfShape"] == 0 and report.after.ops.get("BatchNormalization", 0) == 0
    onnx.checker.check_model(simplified, full_check=False)
