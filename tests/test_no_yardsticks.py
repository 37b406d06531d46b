"""The engine runs with neither onnxruntime nor onnx.reference importable (they are yardsticks only)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED_RUN = textwrap.dedent(
    """
    import importlib.abc, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "onnxruntime" or name.startswith(("onnxruntime.", "onnx.reference")):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    import importlib.resources
    import numpy as np
    import onnxforge
    import onnxforge.cli.main  # the CLI must import without them too

    data = importlib.resources.files("onnxforge") / "data"
    split = np.load(str(data / "digits_test.npz"))
    sess = onnxforge.InferenceSession(str(data / "digits_cnn.onnx"))
    (logits,) = sess.run(None, {"input": split["images"]})
    accuracy = float((logits.argmax(1) == split["labels"]).mean())
    assert not any(m == "onnxruntime" or m.startswith("onnx.reference") for m in sys.modules)
    print(f"accuracy={accuracy:.4f}")
    """
)


def test_engine_and_cli_work_with_onnxruntime_and_onnx_reference_blocked() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCKED_RUN], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    accuracy = float(done.stdout.strip().split("=")[1])
    assert accuracy >= 0.95
