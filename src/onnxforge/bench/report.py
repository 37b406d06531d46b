"""Presenting a benchmark :class:`~onnxforge.bench.harness.Result`: a rich table, Markdown and JSON.

Only medians and ratios of medians are shown; single runs never are. Files go to ``benchmarks/results/``
as ``bench-<date>[-quick].md/json`` plus ``latest.md/json``, overwritten by the next run of the same day
so the folder stays small.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from onnxforge.bench.results import Result, Row

HEADERS = [
    "model",
    "threads",
    "onnxforge ms",
    "ORT ms",
    "ratio",
    "× onnx.reference",
    "create ratio",
    "RSS ratio",
    "match",
]

DEFINITIONS = (
    "ratio = onnxforge latency / ORT latency (lower is better for onnxforge; 1.0 = parity): the median of the "
    "per-block ratios over alternating blocks of runs in one process (ORT intra_op_num_threads = onnxforge's); "
    "the ms columns are medians over all runs. "
    "× onnx.reference = onnx.reference median / onnxforge median (how many times faster onnxforge is). "
    "create ratio = median session-creation time, onnxforge / ORT. "
    "RSS ratio = peak RSS of a child process that loads and runs the model, minus a baseline child that only "
    "imports numpy+onnx, onnxforge / ORT. match = onnxforge outputs equal ORT's within rtol 1e-3, atol 1e-4."
)


def default_results_dir() -> Path:
    return Path.cwd() / "benchmarks" / "results"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{_num(value)}×"


def _reference_cell(row: Row) -> str:
    if row.reference_status == "ok":
        return _times(row.vs_reference)
    if row.reference_status.startswith("skipped"):
        return row.reference_status
    return "error" if row.reference_status.startswith("error") else "–"


def _match_cell(row: Row) -> str:
    """Short: the error text itself is listed under the table."""
    if row.match is None:
        return "error" if row.error else "–"
    return "yes" if row.match else f"NO ({_num(row.max_abs_diff, 4)})"


def cells(row: Row) -> list[str]:
    return [
        row.model,
        str(row.threads),
        _num(row.onnxforge_ms),
        _num(row.ort_ms),
        _times(row.ratio),
        _reference_cell(row),
        _times(row.create_ratio),
        _times(row.rss_ratio),
        _match_cell(row),
    ]


def summary_lines(result: Result) -> list[str]:
    lines = []
    for threads, value in result.geomean.items():
        count = sum(1 for r in result.rows if r.threads == threads and r.ratio and r.model != "dispatch_probe")
        lines.append(f"geomean ratio (onnxforge/ORT) at {threads} thread(s): {_times(value)} over {count} models")
    for threads, per_node in result.dispatch_us_per_node.items():
        lines.append(
            f"dispatch overhead at {threads} thread(s): onnxforge {_num(per_node.get('onnxforge'))} µs/node, "
            f"ORT {_num(per_node.get('ort'))} µs/node; onnxforge with plan fusion off (one step per node, "
            f"ORT_DISABLE_ALL) {_num(per_node.get('onnxforge_unfused'))} µs/node"
        )
    for check in result.self_check:
        lines.append(
            f"self-check ORT vs ORT on {check.model} at {check.threads} thread(s): {check.a_ms:.2f} / {check.b_ms:.2f} ms "
            f"= ratio {check.ratio:.3f}"
        )
    return lines


def render(result: Result, console: Console | None = None) -> None:
    """Print the table and the summary lines."""
    console = console or Console()
    table = Table(title="onnxforge vs onnxruntime", header_style="bold")
    for header in HEADERS:
        left = header in ("model", "match")
        table.add_column(header, justify="left" if left else "right", no_wrap=header != "× onnx.reference")
    for row in result.rows:
        style = "red" if row.error or row.match is False else None
        table.add_row(*cells(row), style=style)
    console.print(table)
    for line in summary_lines(result):
        console.print(line)
    failures = [r for r in result.rows if r.error]
    seen: set[str] = set()
    for row in failures:
        if row.model not in seen:
            seen.add(row.model)
            console.print(f"[red]{row.model}[/red]: {row.error}", highlight=False)


def to_markdown(result: Result) -> str:
    meta = result.meta
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    lines = [
        f"# onnxforge benchmark — {meta.get('date', '')}",
        "",
        f"Machine: {meta.get('machine', '')}, {meta.get('cpus', '?')} CPUs, Python {meta.get('python', '')}; {versions}.",
        f"Config: {json.dumps(meta.get('config', {}))}",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" if i in (0, 8) else "---:" for i in range(len(HEADERS))) + "|",
    ]
    for row in result.rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells(row)) + " |")
    lines += ["", *[f"- {line}" for line in summary_lines(result)], ""]
    errors = {r.model: r.error for r in result.rows if r.error}
    if errors:
        lines += ["Errors:", "", *[f"- `{m}`: {e}" for m, e in errors.items()], ""]
    lines += [DEFINITIONS, ""]
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """JSON has no inf/nan: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_json(result: Result) -> dict[str, Any]:
    return _clean(
        {
            "meta": result.meta,
            "definitions": DEFINITIONS,
            "rows": [dataclasses.asdict(r) for r in result.rows],
            "geomean_ratio": result.geomean,
            "dispatch_us_per_node": result.dispatch_us_per_node,
            "self_check": [dataclasses.asdict(c) for c in result.self_check],
        }
    )


def write_reports(result: Result, out_dir: Path | None = None, tag: str = "", latest: bool = True) -> list[Path]:
    """Write ``bench-<date><tag>.md/json`` (and ``latest.md/json`` unless ``latest`` is false); return the paths."""
    out = Path(out_dir) if out_dir is not None else default_results_dir()
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{datetime.date.today().isoformat()}{tag}"
    markdown, payload = to_markdown(result), json.dumps(to_json(result), indent=1)
    paths = []
    for name in (stem, "latest") if latest else (stem,):
        for suffix, text in ((".md", markdown), (".json", payload)):
            path = out / f"{name}{suffix}"
            path.write_text(text + ("\n" if not text.endswith("\n") else ""), encoding="utf-8")
            paths.append(path)
    return paths
