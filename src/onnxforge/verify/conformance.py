"""Run the official ONNX node conformance cases (generated from the installed onnx) through onnxforge.

``python -m onnxforge.verify.conformance [SUBSTRING ...]`` prints one line per failing case and a final
``N passed, N failed`` line. The comparison follows onnx's backend runner: ``assert_allclose`` at the
case's rtol/atol, exact equality for strings, and element-wise recursion into sequences and optionals.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class CaseResult:
    name: str
    ops: list[str]
    passed: bool
    reason: str = ""


def collect_cases(patterns: Iterable[str] = ()) -> list[Any]:
    """The node cases of the installed onnx, optionally only those whose name contains a pattern."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    wanted = list(patterns)
    return [c for c in cases if not wanted or any(p in c.name for p in wanted)]


def assert_similar(expected: Any, actual: Any, rtol: float, atol: float) -> None:
    """Raise AssertionError unless ``actual`` matches ``expected`` the way onnx's backend test checks."""
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            raise AssertionError(f"expected a sequence of {len(expected)}, got {type(actual).__name__}")
        for e, a in zip(expected, actual):
            assert_similar(e, a, rtol, atol)
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(actual) != set(expected):
            raise AssertionError(f"expected a map with keys {sorted(expected)}, got {actual!r}")
        for key in expected:
            assert_similar(expected[key], actual[key], rtol, atol)
        return
    if expected is None:
        if actual is not None:
            raise AssertionError(f"expected an empty optional, got {type(actual).__name__}")
        return
    expected = np.asarray(expected)
    if not isinstance(actual, np.ndarray):
        if actual is None:
            raise AssertionError("expected a tensor, got None")
        actual = np.asarray(actual)
    if expected.dtype != actual.dtype and not (expected.dtype.kind in "OUS" and actual.dtype.kind in "OUS"):
        raise AssertionError(f"dtype: expected {expected.dtype}, got {actual.dtype}")
    if expected.shape != actual.shape:
        raise AssertionError(f"shape: expected {expected.shape}, got {actual.shape}")
    if expected.dtype.kind in "OUS":
        if expected.tolist() != actual.tolist():
            raise AssertionError(f"values: expected {expected.tolist()!r}, got {actual.tolist()!r}")
        return
    if expected.dtype.kind in "fc" or expected.dtype.itemsize < 2 and expected.dtype.kind == "V":
        np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol)
        return
    if expected.dtype.kind in "biu":
        np.testing.assert_array_equal(actual, expected)
        return
    # bfloat16 / float8 / int4 from ml_dtypes compare as float64
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol)


def _normalize(value: Any) -> Any:
    import onnx

    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    return value


def run_case(case: Any) -> CaseResult:
    from onnxforge._errors import OnnxForgeError
    from onnxforge.runtime.session import InferenceSession

    ops = sorted({n.op_type for n in case.model.graph.node})
    try:
        session = InferenceSession(case.model.SerializeToString())
        input_names = [v.name for v in case.model.graph.input]
        output_names = [v.name for v in case.model.graph.output]
        for raw_inputs, raw_outputs in case.data_sets:
            # onnx hands some values over as TensorProto (float8, int4, ...), as its runner normalises too.
            inputs = [_normalize(value) for value in raw_inputs]
            outputs = [_normalize(value) for value in raw_outputs]
            feed = dict(zip(input_names, inputs))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                actual = session.run(output_names, feed)
            for name, expected, got in zip(output_names, outputs, actual):
                try:
                    assert_similar(expected, got, case.rtol, case.atol)
                except AssertionError as exc:
                    return CaseResult(case.name, ops, False, f"output '{name}': {str(exc).strip().splitlines()[0:6]}")
    except OnnxForgeError as exc:
        return CaseResult(case.name, ops, False, f"{type(exc).__name__}: {str(exc)[:300]}")
    except Exception as exc:  # a crash is a failure too, with its type
        return CaseResult(case.name, ops, False, f"crash {type(exc).__name__}: {str(exc)[:300]}")
    return CaseResult(case.name, ops, True)


def main(argv: list[str] | None = None) -> int:
    patterns = sys.argv[1:] if argv is None else argv
    results = [run_case(case) for case in collect_cases(patterns)]
    failed = [r for r in results if not r.passed]
    for result in failed:
        print(f"FAIL {result.name} [{','.join(result.ops)}]: {result.reason}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
