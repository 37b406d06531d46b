"""Every ONNX node conformance case of the installed onnx, through the onnxforge engine.

A case listed in ``tests/verify/conformance_known_failures.txt`` (with its reason) is expected to fail;
any other failure is a regression, and a listed case that passes must be taken off the list.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxforge.verify.conformance import collect_cases, run_case

KNOWN_FAILURES_FILE = Path(__file__).with_name("conformance_known_failures.txt")


def _known_failures() -> dict[str, str]:
    known: dict[str, str] = {}
    for line in KNOWN_FAILURES_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            known[name] = reason.strip()
    return known


CASES = {case.name: case for case in collect_cases()}
KNOWN = _known_failures()


def test_the_suite_has_all_cases_of_onnx_1_23_2() -> None:
    import onnx

    if onnx.__version__ == "1.23.2":
        assert len(CASES) == 1884


def _model_test_names() -> set[str]:
    import onnx

    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    return {
        case.name
        for kind in ("simple", "real", "pytorch-converted", "pytorch-operator")
        for case in (data / kind).iterdir()
    }


def test_every_known_failure_has_a_reason_and_exists() -> None:
    assert all(reason for reason in KNOWN.values())
    assert set(KNOWN) <= set(CASES) | _model_test_names()


@pytest.mark.parametrize("name", sorted(CASES))
def test_node_case(name: str) -> None:
    result = run_case(CASES[name])
    if name in KNOWN:
        assert not result.passed, f"{name} passes now: take it off {KNOWN_FAILURES_FILE.name}"
        pytest.xfail(KNOWN[name])
    assert result.passed, result.reason
