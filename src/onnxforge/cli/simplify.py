"""``onnxforge simplify IN OUT``: fold, clean and fuse a model, check it against the original, save it.

The table lists each op type's count in the original and the simplified model, then node and
initializer counts and model size, like onnxsim's. Below it: the passes that changed the graph, any pass
dropped because it changed the outputs (or raised), and how the result was verified. The input file is
never written; models above 2 GB are saved with their tensors in ``OUT.data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from onnxforge._errors import InvalidArgument
from onnxforge.passes.overwrite_input_shapes import Dim, parse_shape_spec
from onnxforge.passes.pipeline import PASS_NAMES
from onnxforge.passes.report import SimplifyReport, format_bytes, parse_size
from onnxforge.passes.simplify import simplify_file


def parse_input_shapes(specs: list[str]) -> dict[str | None, list[Dim]]:
    shapes: dict[str | None, list[Dim]] = {}
    for spec in specs:
        name, dims = parse_shape_spec(spec)
        if not dims:
            raise InvalidArgument(f"--overwrite-input-shape {spec}: expected NAME:D1,D2,... (e.g. input:1,3,224,224)")
        shapes[name] = dims
    return shapes


def report_table(report: SimplifyReport, title: str = "Simplified") -> Table:
    table = Table(title=title)
    table.add_column("")
    table.add_column("Original Model", justify="right")
    table.add_column("Simplified Model", justify="right")
    for op, before, after in report.rows():
        style = "green" if after < before else ("red" if after > before else "")
        table.add_row(op, str(before), Text(str(after), style=style))
    table.add_section()
    table.add_row("Nodes", str(report.before.nodes), str(report.after.nodes))
    table.add_row("Initializers", str(report.before.initializers), str(report.after.initializers))
    table.add_row("Model Size", format_bytes(report.before.size), format_bytes(report.after.size))
    return table


def print_report(console: Console, report: SimplifyReport) -> None:
    console.print(report_table(report))
    console.print(f"changed by: {', '.join(report.changed_passes) or 'no pass'}")
    for name, why in report.dropped_passes.items():
        console.print(Text(f"dropped pass {name}: it changed the outputs ({why})", style="yellow"))
    for name, why in report.failed_passes.items():
        console.print(Text(f"skipped pass {name}: it raised ({why})", style="yellow"))
    if report.verified:
        console.print(Text(f"verified: {report.verification}", style="green"))
    else:
        console.print(Text(f"NOT verified: {report.verification}", style="bold yellow"))


def simplify_command(
    input: Annotated[Path, typer.Argument(help="The ONNX model to simplify (never modified).")],
    output: Annotated[Path, typer.Argument(help="Where to write the simplified model.")],
    check: Annotated[int, typer.Option("--check", help="Random input sets to verify on (0: no check).")] = 3,
    overwrite_input_shape: Annotated[
        list[str], typer.Option("--overwrite-input-shape", help="Pin an input's shape: NAME:1,3,224,224 (repeatable).")
    ] = [],  # noqa: B006 - typer reads the default; it is never mutated
    skip: Annotated[
        list[str], typer.Option("--skip", help=f"A pass not to run (repeatable): {', '.join(PASS_NAMES)}.")
    ] = [],  # noqa: B006
    no_fold_larger_than: Annotated[
        str | None, typer.Option("--no-fold-larger-than", help="Do not fold tensors larger than SIZE (e.g. 10MB).")
    ] = None,
    initializers_as_constants: Annotated[
        bool,
        typer.Option(
            "--initializers-as-constants/--keep-initializer-inputs",
            help="Treat initializers that are also graph inputs (IR < 4) as constants.",
        ),
    ] = True,
) -> None:
    """Simplify a model: fold constants and shapes, remove no-ops, fuse, then verify against the original."""
    unknown = sorted(set(skip) - set(PASS_NAMES))
    if unknown:
        raise InvalidArgument(f"--skip: unknown pass(es) {unknown}; passes are {', '.join(PASS_NAMES)}")
    try:
        limit = parse_size(no_fold_larger_than) if no_fold_larger_than is not None else None
    except ValueError as exc:
        raise InvalidArgument(f"--no-fold-larger-than: {exc}") from None
    report = simplify_file(
        input,
        output,
        check_n=check,
        overwrite_input_shapes=parse_input_shapes(overwrite_input_shape),
        skip=skip,
        fold_size_limit=limit,
        initializers_as_constants=initializers_as_constants,
    )
    print_report(Console(highlight=False), report)
    if not report.verified and check > 0:
        Console(stderr=True, highlight=False).print(
            Text(f"warning: {output} is the original model, unchanged: it could not be verified", style="yellow")
        )
