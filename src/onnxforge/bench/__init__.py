"""Benchmarks: onnxforge against onnxruntime and onnx.reference, on onnx's light models, PyTorch exports
and a dispatch-overhead probe; plus a per-op profiler.

Entry points: :func:`run_suite`, :func:`bench_model`, :func:`profile_model`, and ``python -m onnxforge.bench``.
torch and onnxruntime are imported only when a measurement needs them.
"""

from onnxforge.bench.harness import bench_model, run_self_check, run_suite
from onnxforge.bench.profile import OpRow, profile_model, profile_report
from onnxforge.bench.report import render, to_json, to_markdown, write_reports
from onnxforge.bench.results import Config, Result, Row, SelfCheck

__all__ = [
    "Config",
    "OpRow",
    "Result",
    "Row",
    "SelfCheck",
    "bench_model",
    "profile_model",
    "profile_report",
    "render",
    "run_self_check",
    "run_suite",
    "to_json",
    "to_markdown",
    "write_reports",
]
