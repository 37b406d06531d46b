"""Smoke tests of the benchmark harness: structure and plumbing only, never timing values.

Everything runs on tiny models built in code (a short dispatch probe) with a 1-thread, 2-block config, so
the whole module stays well under 20 s on a busy 2-core machine.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import onnx
import pytest

pytest.importorskip("onnxruntime")

from onnxforge.bench import Config, bench_model, profile_model, run_self_check, to_markdown, write_reports  # noqa: E402
from onnxforge.bench.measure import compare_outputs, paired_ratio  # noqa: E402
from onnxforge.bench.results import Result, Row, geomean  # noqa: E402
from onnxforge.bench.suite import dispatch_probe_model, select  # noqa: E402

TINY = Config(blocks=2, target_block_s=0.005, pause_s=0.01, creation_repeats=1, reference_runs=1, rss=True, rss_runs=1)


@pytest.fixture(scope="module")
def probe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "probe.onnx"
    onnx.save(dispatch_probe_model(nodes=40), str(path))
    return path


@pytest.fixture(scope="module")
def result(probe_path: Path) -> Result:
    return bench_model(probe_path, {}, [1], config=TINY, show_progress=False)


def test_bench_model_fills_every_field(result: Result) -> None:
    (row,) = result.rows
    assert isinstance(row, Row) and row.model == "probe" and row.threads == 1 and row.nodes == 40
    assert row.error == "", row.error
    assert row.match is True
    assert isinstance(row.ratio, float) and math.isfinite(row.ratio) and row.ratio > 0
    for value in (row.onnxforge_ms, row.ort_ms, row.reference_ms, row.vs_reference, row.create_ratio):
        assert isinstance(value, float) and value > 0
    assert row.reference_status == "ok"
    assert row.rss_onnxforge_mb is not None and row.rss_ort_mb is not None
    assert row.runs == {"ort": 2, "onnxforge": 2} or all(n >= 2 for n in row.runs.values())
    assert set(result.geomean) == {1}


def test_reports_are_written(result: Result, tmp_path: Path) -> None:
    paths = write_reports(result, tmp_path, tag="-test")
    names = {p.name for p in paths}
    assert {"latest.md", "latest.json"} <= names and any(
        n.startswith("bench-") and n.endswith("-test.md") for n in names
    )
    payload = json.loads((tmp_path / "latest.json").read_text())
    assert payload["rows"][0]["model"] == "probe" and payload["rows"][0]["match"] is True
    assert "1" in payload["geomean_ratio"]
    markdown = (tmp_path / "latest.md").read_text()
    assert "| probe | 1 |" in markdown and markdown.strip() == to_markdown(result).strip()


def test_self_check_reports_a_ratio(probe_path: Path) -> None:
    (check,) = run_self_check([1], config=TINY, show_progress=False, model=probe_path)
    assert check.threads == 1 and isinstance(check.ratio, float) and check.ratio > 0


def test_a_failing_model_becomes_an_error_row(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="bench.test")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("bench.test", 1)])
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    config = Config(blocks=1, target_block_s=0.001, pause_s=0.0, creation_repeats=1, reference=False, rss=False)
    (row,) = bench_model(path, {}, [1], config=config, show_progress=False).rows
    assert row.error and row.ratio is None and row.onnxforge_ms is None


def test_profile_counts_equal_node_counts(probe_path: Path) -> None:
    rows = profile_model(probe_path, {}, runs=2)
    expected = Counter(node.op_type for node in onnx.load(str(probe_path)).graph.node)
    assert {r.op_type: r.count for r in rows} == dict(expected)
    assert all(r.total_ms >= 0 for r in rows) and math.isclose(sum(r.share for r in rows), 1.0, rel_tol=1e-6)


def test_helpers() -> None:
    assert geomean([2.0, 8.0]) == pytest.approx(4.0) and geomean([]) is None
    assert paired_ratio([[2.0, 2.0], [4.0]], [[1.0], [1.0, 1.0]]) == pytest.approx(3.0)
    import numpy as np

    assert compare_outputs([np.ones(3)], [np.ones(3) + 1e-6])[0] is True
    assert compare_outputs([np.ones(3)], [np.zeros(3)])[0] is False
    assert compare_outputs([np.ones(3)], [np.ones(4)])[0] is False
    assert [s.name for s in select(["squeezenet", "dispatch_probe"])] == ["squeezenet", "dispatch_probe"]
    with pytest.raises(ValueError):
        select(["no_such_model"])


def test_bench_package_imports_without_torch() -> None:
    code = "import sys, onnxforge.bench, onnxforge.bench.torch_models; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_torch_model_exports_and_runs(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import numpy as np

    from onnxforge import InferenceSession
    from onnxforge.bench import torch_models

    path = torch_models.export("lstm_b8", tmp_path)
    assert path.exists() and torch_models.export("lstm_b8", tmp_path) == path  # the second call hits the cache
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "LSTM" in ops
    feeds = torch_models.make_inputs("lstm_b8")
    (out,) = InferenceSession(str(path)).run(None, feeds)
    assert out.shape == (8, 100, 256) and np.isfinite(out).all()


def test_compare_by_op_lines_up_both_engines() -> None:
    from onnxforge.bench.profile import NodeRow, OpRow, ProfileReport, compare_by_op

    ours = ProfileReport("m", "onnxforge", 3, [OpRow("Conv", 4.0, 2, 0.8), OpRow("Relu", 1.0, 2, 0.2)], [])
    theirs = ProfileReport(
        "m",
        "ort",
        3,
        [OpRow("FusedConv", 1.0, 2, 0.5), OpRow("Conv", 2.0, 1, 0.5)],
        [NodeRow("a", "Conv", 2.0, 1, 0.5)],
    )
    rows = compare_by_op(ours, theirs)
    assert [r.op_type for r in rows] == ["Conv", "FusedConv", "Relu"]
    conv, fused, relu = rows
    assert (conv.onnxforge_ms, conv.onnxforge_count, conv.ort_ms, conv.ort_count, conv.ratio) == (4.0, 2, 2.0, 1, 2.0)
    assert (fused.onnxforge_ms, fused.onnxforge_count, fused.ratio) == (None, 0, None)
    assert (relu.ort_ms, relu.ort_count, relu.ratio) == (None, 0, None)


def test_profile_both_engines_cli(probe_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from onnxforge.bench.__main__ import main

    assert main(["--profile", "--engine", "both", "--runs", "1", str(probe_path)]) == 0
    out = capsys.readouterr().out
    assert "onnxforge vs ORT" in out and "ORT nodes" in out
    total = next(line for line in out.splitlines() if "total" in line)
    assert total.count("×") == 1  # both engines ran, so the total has a ratio
