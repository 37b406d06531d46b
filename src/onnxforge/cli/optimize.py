"""``onnxforge optimize IN OUT --level basic|extended|all``: save the graph a session would run.

The level names are onnxruntime's ``GraphOptimizationLevel`` (``disable`` = ORT_DISABLE_ALL, ``basic``,
``extended``, ``all``); the graph written is what ``InferenceSession`` plans at that level, as
``SessionOptions.optimized_model_filepath`` would save it. The input file is never written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from onnxforge._errors import InvalidArgument
from onnxforge.ir.load import load_model
from onnxforge.passes.presets import optimize
from onnxforge.passes.report import ModelStats, format_bytes
from onnxforge.passes.simplify import save_model
from onnxforge.runtime.options import GraphOptimizationLevel

LEVELS: dict[str, GraphOptimizationLevel] = {
    "disable": GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def optimize_command(
    input: Annotated[Path, typer.Argument(help="The ONNX model to optimize (never modified).")],
    output: Annotated[Path, typer.Argument(help="Where to write the optimized model.")],
    level: Annotated[str, typer.Option("--level", help="disable, basic, extended or all.")] = "all",
) -> None:
    """Write the model as an InferenceSession would run it at an optimization level."""
    chosen = LEVELS.get(level.lower())
    if chosen is None:
        raise InvalidArgument(f"--level: expected one of {', '.join(LEVELS)}, got '{level}'")
    if input.resolve() == output.resolve():
        raise InvalidArgument(f"refusing to overwrite the input model {input}; choose another output path")
    model, _ = load_model(input)
    before = ModelStats.of(model)
    optimized = optimize(model, int(chosen))
    save_model(optimized, output)
    after = ModelStats.of(optimized, output.stat().st_size)
    table = Table(title=f"Optimized ({level.lower()})")
    table.add_column("")
    table.add_column("Original Model", justify="right")
    table.add_column("Optimized Model", justify="right")
    for op in sorted(set(before.ops) | set(after.ops)):
        table.add_row(op, str(before.ops.get(op, 0)), str(after.ops.get(op, 0)))
    table.add_section()
    table.add_row("Nodes", str(before.nodes), str(after.nodes))
    table.add_row("Initializers", str(before.initializers), str(after.initializers))
    table.add_row("Model Size", format_bytes(before.size), format_bytes(after.size))
    Console(highlight=False).print(table)
