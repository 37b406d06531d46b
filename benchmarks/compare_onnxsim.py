"""Side-by-side node counts: ``onnxforge.passes.simplify`` against onnxsim on onnx's light models.

Usage::

    python benchmarks/compare_onnxsim.py [--check N] [MODEL.onnx ...]

With no paths it runs the six light models the issue names (resnet50, inception_v2, densenet121,
shufflenet, squeezenet, vgg19); extra paths (e.g. the benchmark suite's PyTorch exports) are added.
onnxsim is a dev-only comparison (``pip install onnxsim``); without it the issue's recorded onnxsim
numbers are shown where known. Exits 1 when onnxforge leaves more nodes than onnxsim on any model, or a
simplified model fails verification.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import onnx

from onnxforge.passes import simplify

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = ("resnet50", "inception_v2", "densenet121", "shufflenet", "squeezenet", "vgg19")
# onnxsim's results as the issue records them, for machines without onnxsim.
ISSUE_ONNXSIM = {"light_resnet50": 123, "light_inception_v2": 226, "light_densenet121": 550}


def onnxsim_nodes(path: Path) -> tuple[int | None, float]:
    try:
        import onnxsim
    except ImportError:
        return ISSUE_ONNXSIM.get(path.stem), 0.0
    start = time.perf_counter()
    try:
        simplified, ok = onnxsim.simplify(onnx.load(str(path)))
    except Exception as exc:  # onnxsim refuses some models (unsorted nodes, > 2 GB)
        print(f"  onnxsim failed on {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None, time.perf_counter() - start
    return (len(simplified.graph.node) if ok else None), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="extra model files to compare")
    parser.add_argument("--check", type=int, default=3, help="random input sets onnxforge verifies on")
    args = parser.parse_args(argv)
    paths = [LIGHT_DIR / f"light_{name}.onnx" for name in LIGHT_MODELS] + list(args.models)

    header = f"{'model':<22}{'original':>10}{'onnxsim':>10}{'onnxforge':>11}{'verified':>10}{'onnxsim s':>11}{'onnxforge s':>13}"
    print(header)
    print("-" * len(header))
    worse = False
    for path in paths:
        original = len(onnx.load(str(path), load_external_data=False).graph.node)
        theirs, their_time = onnxsim_nodes(path)
        start = time.perf_counter()
        simplified, report = simplify(str(path), check_n=args.check)
        ours_time = time.perf_counter() - start
        ours = len(simplified.graph.node)
        if (theirs is not None and ours > theirs) or not report.verified:
            worse = True
        print(
            f"{path.stem:<22}{original:>10}{theirs if theirs is not None else '-':>10}{ours:>11}"
            f"{'yes' if report.verified else 'NO':>10}{their_time:>11.1f}{ours_time:>13.1f}"
        )
        if report.dropped_passes:
            print(f"  dropped: {report.dropped_passes}")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
