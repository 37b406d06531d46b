"""``onnxforge conformance``: the ONNX node conformance suite of the installed onnx, through onnxforge.

Prints a table per domain and per op (passed / failed), each failure with its reason, and a final line
``N passed, N failed``. ``--json OUT`` writes the same as JSON; ``--onnx-version-check`` refuses to run
unless the installed onnx is the version the tests pin (so numbers stay comparable).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import onnx
import typer
from rich.console import Console
from rich.table import Table

from onnxforge._errors import Fail
from onnxforge.verify.conformance import collect_cases, run_case

PINNED_ONNX = "1.23.2"


def _domains(case: object) -> set[str]:
    return {node.domain or "ai.onnx" for node in case.model.graph.node} or {"ai.onnx"}  # type: ignore[attr-defined]


def conformance(
    patterns: Annotated[list[str] | None, typer.Argument(help="Only cases whose name contains one of these.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    onnx_version_check: Annotated[
        bool, typer.Option("--onnx-version-check", help=f"Require onnx {PINNED_ONNX}, the version tests pin.")
    ] = False,
) -> None:
    """Run the official ONNX node conformance cases and summarise them per op and per domain."""
    if onnx_version_check and onnx.__version__ != PINNED_ONNX:
        raise Fail(f"onnx {onnx.__version__} is installed; the conformance numbers are for onnx {PINNED_ONNX}")
    console = Console()
    cases = collect_cases(patterns or ())
    per_op: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_domain: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    records = []
    with console.status(f"running {len(cases)} cases"):
        for case in cases:
            result = run_case(case)
            column = 0 if result.passed else 1
            for op in result.ops:
                per_op[op][column] += 1
            for domain in _domains(case):
                per_domain[domain][column] += 1
            records.append({"name": result.name, "ops": result.ops, "passed": result.passed, "reason": result.reason})
    for title, counts in (("domain", per_domain), ("op", per_op)):
        table = Table(title=f"per {title}")
        table.add_column(title)
        table.add_column("passed", justify="right")
        table.add_column("failed", justify="right")
        for key in sorted(counts):
            passed, failed = counts[key]
            table.add_row(key, str(passed), f"[red]{failed}[/red]" if failed else "0")
        console.print(table)
    failures = [r for r in records if not r["passed"]]
    for record in failures:
        console.print(f"[red]FAIL[/red] {record['name']}: {record['reason']}", soft_wrap=True, highlight=False)
    summary = f"{len(records) - len(failures)} passed, {len(failures)} failed"
    if json_out is not None:
        json_out.write_text(json.dumps({"onnx": onnx.__version__, "summary": summary, "cases": records}, indent=1))
    console.print(summary, highlight=False)
    if failures:
        raise typer.Exit(code=1)
