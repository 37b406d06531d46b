"""The simplify and optimize CLI functions, mounted on a throw-away typer app (the lead wires them into main)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest
import typer
from typer.testing import CliRunner

from onnxforge._errors import InvalidArgument
from onnxforge.cli.optimize import optimize_command
from onnxforge.cli.simplify import parse_input_shapes, simplify_command
from onnxforge.passes.report import parse_size

from .helpers import ops
from .test_simplify import _messy_model


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("simplify")(simplify_command)
    app.command("optimize")(optimize_command)
    return app


def test_simplify_prints_the_table_and_writes_the_model(app: typer.Typer, tmp_path: Path) -> None:
    source = tmp_path / "in.onnx"
    onnx.save(_messy_model(), source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    result = CliRunner().invoke(
        app,
        ["simplify", str(source), str(tmp_path / "out.onnx"), "--check", "2", "--overwrite-input-shape", "x:2,3,5,5"],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    for text in (
        "Original Model",
        "Simplified Model",
        "BatchNormalization",
        "Nodes",
        "Initializers",
        "Model Size",
        "verified",
    ):
        assert text in result.output
    assert ops(onnx.load(str(tmp_path / "out.onnx"))) == {"Conv": 1, "Relu": 1, "Reshape": 1}
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest


def test_simplify_rejects_unknown_skip_and_bad_sizes(tmp_path: Path) -> None:
    source = tmp_path / "in.onnx"
    onnx.save(_messy_model(), source)
    with pytest.raises(InvalidArgument):
        simplify_command(source, tmp_path / "o.onnx", skip=["no_such_pass"])
    with pytest.raises(InvalidArgument):
        simplify_command(source, tmp_path / "o.onnx", no_fold_larger_than="lots")
    with pytest.raises(InvalidArgument):
        simplify_command(source, source)


def test_optimize_levels(app: typer.Typer, tmp_path: Path) -> None:
    source = tmp_path / "in.onnx"
    onnx.save(_messy_model(), source)
    for level, bn in (("basic", 1), ("extended", 0), ("all", 0)):
        out = tmp_path / f"{level}.onnx"
        result = CliRunner().invoke(app, ["optimize", str(source), str(out), "--level", level], env={"COLUMNS": "160"})
        assert result.exit_code == 0, result.output
        assert ops(onnx.load(str(out)))["BatchNormalization"] == bn
    with pytest.raises(InvalidArgument):
        optimize_command(source, tmp_path / "x.onnx", level="turbo")


def test_parsers() -> None:
    assert parse_size("1024") == 1024 and parse_size("10KB") == 10240 and parse_size("1.5MiB") == 1572864
    assert parse_input_shapes(["x:1,3,224,224", "2,batch"]) == {"x": [1, 3, 224, 224], None: [2, "batch"]}
