"""``onnxforge conformance``: per-op table, JSON, and the final summary line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from onnxforge.cli.main import app


def test_conformance_subset_prints_summary_and_writes_json(tmp_path) -> None:
    out = tmp_path / "conf.json"
    result = CliRunner().invoke(app, ["conformance", "test_abs", "test_relu", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "3 passed, 0 failed"
    data = json.loads(out.read_text())
    assert data["summary"] == "3 passed, 0 failed"
    assert {case["name"] for case in data["cases"]} == {"test_abs", "test_relu", "test_relu_expanded_ver18"}
    assert "Relu" in result.output


def test_conformance_no_match_is_zero_cases() -> None:
    result = CliRunner().invoke(app, ["conformance", "no_such_case_name"])
    assert result.exit_code == 0
    assert result.output.strip().splitlines()[-1] == "0 passed, 0 failed"
