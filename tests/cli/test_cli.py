"""The ``onnxforge`` CLI: info, run, errors and exec, checked on the bundled digits model."""

from __future__ import annotations

import json
import os
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from onnxforge.cli.main import app
from onnxforge.runtime.ort import shim_path
from tests.cli.helpers import clean_env, run_cli, run_python

runner = CliRunner()

# Written only against onnxruntime's API: under `onnxforge exec` it must run on onnxforge unchanged.
ORT_SCRIPT = """\
import json
import sys

import numpy as np
import onnxruntime

options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 1
session = onnxruntime.InferenceSession(sys.argv[1], sess_options=options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
(logits,) = session.run(None, {name: np.load(sys.argv[2])})
print(json.dumps({
    "module": onnxruntime.__name__,
    "session_class": onnxruntime.InferenceSession.__module__ + "." + onnxruntime.InferenceSession.__qualname__,
    "input": name,
    "logits": logits.tolist(),
}))
"""


def test_console_script_points_at_main() -> None:
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("onnxforge") == "onnxforge.cli.main:main"


def test_info_shows_inputs_opsets_and_op_histogram(model_path: Path) -> None:
    result = runner.invoke(app, ["info", str(model_path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"input\s*│\s*tensor\(float\)\s*│\s*\[batch, 1, 8, 8\]", out), out
    assert re.search(r"logits\s*│\s*tensor\(float\)\s*│\s*\[batch, 10\]", out), out
    assert re.search(r"Conv\s*│\s*2\b", out), out
    assert "ai.onnx 17" in out
    assert "IR version:  10" in out
    model = onnx.load(str(model_path))
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert f"{n_params:,} in {len(model.graph.initializer)} initializers" in out


def test_run_random_prints_output_shape(model_path: Path) -> None:
    result = runner.invoke(app, ["run", str(model_path), "--random", "--dim", "batch=2"])
    assert result.exit_code == 0, result.output
    assert re.search(r"logits\s*│\s*\[2, 10\]\s*│\s*float32", result.stdout), result.stdout


def test_run_random_without_dim_names_the_dim(model_path: Path) -> None:
    result = runner.invoke(app, ["run", str(model_path), "--random"])
    assert result.exit_code == 1
    assert "error: InvalidArgument:" in result.stderr
    assert "'batch'" in result.stderr and "--dim batch=N" in result.stderr


def test_run_random_refuses_an_input_of_unknown_rank_but_fills_a_scalar(tmp_path: Path) -> None:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "s"], ["y"])],
        "g",
        [
            onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None),
            onnx.helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, []),
        ],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    path = tmp_path / "unknown_rank.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    result = runner.invoke(app, ["run", str(path), "--random"])
    assert result.exit_code == 1
    assert "input 'x' has no declared shape; feed it with --input" in result.stderr
    np.save(tmp_path / "x.npy", np.ones((2, 3), np.float32))
    result = runner.invoke(app, ["run", str(path), "--random", "--input", f"x={tmp_path / 'x.npy'}"])
    assert result.exit_code == 0, result.output
    assert re.search(r"y\s*│\s*\[2, 3\]\s*│\s*float32", result.stdout), result.stdout


@pytest.mark.parametrize("fmt", ["npy", "npz", "pb"])
def test_run_input_file_and_output_npz_match_onnxruntime(
    fmt: str, model_path: Path, test_split: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    ort = pytest.importorskip("onnxruntime")
    images = test_split[0][:5]
    feed = tmp_path / f"x.{fmt}"
    if fmt == "npy":
        np.save(feed, images)
    elif fmt == "npz":
        np.savez(feed, input=images)
    else:
        feed.write_bytes(onnx.numpy_helper.from_array(images, "input").SerializeToString())
    out = tmp_path / "out.npz"
    result = runner.invoke(app, ["run", str(model_path), "--input", f"input={feed}", "--output", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out) as saved:
        got = saved["logits"]
    (expected,) = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(None, {"input": images})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_run_missing_file_is_one_error_line_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model.onnx"
    result = run_cli("run", str(missing))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: NoSuchFile: ")
    assert str(missing) in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("--debug", "run", str(tmp_path / "no_such_model.onnx"))
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "NoSuchFile" in result.stderr


def test_exec_runs_an_onnxruntime_script_on_onnxforge(
    model_path: Path, test_split: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    script = tmp_path / "ort_script.py"
    script.write_text(ORT_SCRIPT)
    data = tmp_path / "x.npy"
    np.save(data, test_split[0][:8])
    args = [str(script), str(model_path), str(data)]

    shimmed = run_cli("exec", "--", sys.executable, *args)
    assert shimmed.returncode == 0, shimmed.stderr
    ours = json.loads(shimmed.stdout.strip().splitlines()[-1])
    assert ours["module"] == "onnxforge.runtime.ort"
    assert ours["session_class"] == "onnxforge.runtime.session.InferenceSession"
    assert ours["input"] == "input"

    # The same script without exec: real onnxruntime, the reference the shimmed numbers must match.
    real = run_python(*args)
    assert real.returncode == 0, real.stderr
    theirs = json.loads(real.stdout.strip().splitlines()[-1])
    assert theirs["module"] == "onnxruntime" and not theirs["session_class"].startswith("onnxforge")
    np.testing.assert_allclose(np.array(ours["logits"]), np.array(theirs["logits"]), rtol=1e-4, atol=1e-5)


def test_exec_returns_the_command_exit_code() -> None:
    result = run_cli("exec", "--", sys.executable, "-c", "import sys; sys.exit(7)")
    assert result.returncode == 7


def test_exec_prepends_the_shim_and_keeps_pythonpath(tmp_path: Path) -> None:
    env = clean_env(PYTHONPATH=str(tmp_path))
    code = "import os; print(os.environ['PYTHONPATH'])"
    result = run_cli("exec", "--", sys.executable, "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == os.pathsep.join([shim_path(), str(tmp_path)])


def test_exec_of_a_missing_command_is_one_error_line() -> None:
    result = run_cli("exec", "--", "no-such-command-onnxforge")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: FileNotFoundError: ") and "no-such-command-onnxforge" in lines[0]


def test_demo_reports_accuracy() -> None:
    result = runner.invoke(app, ["demo", "--repeat", "1", "--samples", "2", "--no-compare"])
    assert result.exit_code == 0, result.output
    match = re.search(r"onnxforge accuracy on 360 held-out digits: ([\d.]+)%", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) >= 95.0


def test_run_summarizes_a_list_of_maps_by_its_entries() -> None:
    from onnxforge.cli.run import summarize

    rows = [{0: 0.25, 1: 0.75}, {0: 0.5, 1: 0.5}, {0: 1.0, 1: 0.0}]
    assert summarize(rows) == ("sequence of 3 maps", "-", "{0: 0.25, 1: 0.75}; {0: 0.5, 1: 0.5}; ...")
    assert summarize([np.zeros((2, 3))]) == ("sequence of 1", "-", "(2, 3)")
