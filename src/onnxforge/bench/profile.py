"""Where a model's time goes: per-op-type and per-node totals from the ORT-style profiling trace.

Both onnxforge and onnxruntime write a chrome trace when ``SessionOptions.enable_profiling`` is set;
``end_profiling()`` returns its path. The events named ``<node>_kernel_time`` carry ``args.op_name`` and
``dur`` in µs, so the same parser serves both engines and their hotspots can be compared side by side.

A warm-up run is profiled and discarded first (first-run costs such as lazy weight packing are not what
a serving loop pays), then ``runs`` runs are profiled and averaged: ``total_ms`` is per run, and
``count`` is the number of kernel calls per run (= the node count, for graphs without control flow).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from rich.table import Table

from onnxforge.bench.measure import real_onnxruntime
from onnxforge.bench.suite import model_case

KERNEL_SUFFIX = "_kernel_time"


class OpRow(NamedTuple):
    """Time per op type, per run: (op_type, total_ms, count, share of all kernel time)."""

    op_type: str
    total_ms: float
    count: int
    share: float


class NodeRow(NamedTuple):
    node: str
    op_type: str
    total_ms: float
    count: int
    share: float


@dataclass
class ProfileReport:
    model: str
    engine: str
    runs: int
    by_op: list[OpRow]
    by_node: list[NodeRow]

    @property
    def total_ms(self) -> float:
        return sum(row.total_ms for row in self.by_op)


def kernel_events(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The per-node kernel events of a chrome trace (ORT also writes fences and session events)."""
    return [e for e in events if str(e.get("name", "")).endswith(KERNEL_SUFFIX) and "dur" in e]


def aggregate(events: Iterable[Mapping[str, Any]], runs: int) -> tuple[list[OpRow], list[NodeRow]]:
    """Sum kernel durations by op type and by node, per run, sorted by time (largest first)."""
    op_time: dict[str, float] = defaultdict(float)
    op_count: dict[str, int] = defaultdict(int)
    node_time: dict[str, float] = defaultdict(float)
    node_count: dict[str, int] = defaultdict(int)
    node_op: dict[str, str] = {}
    for event in kernel_events(events):
        op = str(event.get("args", {}).get("op_name", "?"))
        node = str(event["name"])[: -len(KERNEL_SUFFIX)]
        micros = float(event["dur"])
        op_time[op] += micros
        op_count[op] += 1
        node_time[node] += micros
        node_count[node] += 1
        node_op[node] = op
    runs = max(runs, 1)
    total = sum(op_time.values()) or 1.0
    by_op = [OpRow(op, t / runs / 1000.0, op_count[op] // runs, t / total) for op, t in op_time.items()]
    by_node = [
        NodeRow(node, node_op[node], t / runs / 1000.0, node_count[node] // runs, t / total)
        for node, t in node_time.items()
    ]
    by_op.sort(key=lambda r: r.total_ms, reverse=True)
    by_node.sort(key=lambda r: r.total_ms, reverse=True)
    return by_op, by_node


def _session(engine: str, path: Path, threads: int, prefix: str) -> Any:
    if engine == "onnxforge":
        import onnxforge as module
    elif engine == "ort":
        module = real_onnxruntime()
    else:
        raise ValueError(f"unknown engine '{engine}'")
    options = module.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    kwargs = {"providers": ["CPUExecutionProvider"]} if engine == "ort" else {}
    return module.InferenceSession(str(path), options, **kwargs)


def _read_trace(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    os.unlink(path)
    return data if isinstance(data, list) else data.get("traceEvents", [])


def profile_report(
    path: str | Path, dims: Mapping[str, int] | None = None, runs: int = 5, threads: int = 1, engine: str = "onnxforge"
) -> ProfileReport:
    """Profile ``runs`` runs of the model (after a discarded warm-up) in ``engine``."""
    case = model_case(Path(path), dims or {})
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "profile")
        if engine == "ort":
            # ORT writes one trace per session, so the warm-up gets a session of its own.
            warm = _session(engine, case.path, threads, prefix + "_warm")
            warm.run(None, case.feeds)
            _read_trace(warm.end_profiling())
            session = _session(engine, case.path, threads, prefix)
        else:
            session = _session(engine, case.path, threads, prefix)
            session.run(None, case.feeds)
            _read_trace(session.end_profiling())
        for _ in range(runs):
            session.run(None, case.feeds)
        events = _read_trace(session.end_profiling())
    by_op, by_node = aggregate(events, runs)
    return ProfileReport(case.name, engine, runs, by_op, by_node)


def profile_model(
    path: str | Path, dims: Mapping[str, int] | None = None, runs: int = 5, threads: int = 1, engine: str = "onnxforge"
) -> list[OpRow]:
    """Per-op-type rows ``(op_type, total_ms, count, share)``, largest total first."""
    return profile_report(path, dims, runs, threads, engine).by_op


class OpComparison(NamedTuple):
    """One op type in both engines, per run: onnxforge ms and kernel calls, ORT ms and kernel calls.

    ``None`` where the engine ran no node of that type (ORT fuses ops into its own types such as
    ``FusedConv``; onnxforge's fused activations keep their op type and report ~0 ms)."""

    op_type: str
    onnxforge_ms: float | None
    onnxforge_count: int
    ort_ms: float | None
    ort_count: int

    @property
    def ratio(self) -> float | None:
        if not self.onnxforge_ms or not self.ort_ms:
            return None
        return self.onnxforge_ms / self.ort_ms


def compare_by_op(ours: ProfileReport, theirs: ProfileReport) -> list[OpComparison]:
    """The op types of both reports side by side, the biggest time in either engine first."""
    mine = {row.op_type: row for row in ours.by_op}
    other = {row.op_type: row for row in theirs.by_op}
    rows = [
        OpComparison(
            op,
            mine[op].total_ms if op in mine else None,
            mine[op].count if op in mine else 0,
            other[op].total_ms if op in other else None,
            other[op].count if op in other else 0,
        )
        for op in {*mine, *other}
    ]
    rows.sort(key=lambda r: (-max(r.onnxforge_ms or 0.0, r.ort_ms or 0.0), r.op_type))
    return rows


def profile_comparison(
    path: str | Path, dims: Mapping[str, int] | None = None, runs: int = 5, threads: int = 1
) -> tuple[ProfileReport, ProfileReport]:
    """Profile the model in onnxforge, then in ORT, at the same thread count."""
    return (
        profile_report(path, dims, runs, threads, engine="onnxforge"),
        profile_report(path, dims, runs, threads, engine="ort"),
    )


def render_comparison(ours: ProfileReport, theirs: ProfileReport) -> Table:
    """A rich table of :func:`compare_by_op`, with the kernel-time totals as its last row."""

    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    table = Table(
        title=f"{ours.model}: kernel time per run by op type, onnxforge vs ORT ({ours.runs} runs each)",
        header_style="bold",
    )
    for header in ("op type", "onnxforge ms", "onnxforge nodes", "ORT ms", "ORT nodes", "ratio"):
        table.add_column(header, justify="left" if header == "op type" else "right")
    for row in compare_by_op(ours, theirs):
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}×"
        table.add_row(
            row.op_type, ms(row.onnxforge_ms), str(row.onnxforge_count), ms(row.ort_ms), str(row.ort_count), ratio
        )
    total = ours.total_ms / theirs.total_ms if theirs.total_ms else None
    table.add_row(
        "total",
        f"{ours.total_ms:.3f}",
        "",
        f"{theirs.total_ms:.3f}",
        "",
        "—" if total is None else f"{total:.2f}×",
        style="bold",
    )
    return table


def render_profile(report: ProfileReport, top: int = 15) -> list[Table]:
    """Two rich tables: time by op type, and the ``top`` slowest nodes."""
    title = f"{report.model} on {report.engine}: {report.total_ms:.2f} ms of kernel time per run ({report.runs} runs)"
    by_op = Table(title=title, header_style="bold")
    for header in ("op type", "ms / run", "nodes", "share"):
        by_op.add_column(header, justify="left" if header == "op type" else "right")
    for op in report.by_op:
        by_op.add_row(op.op_type, f"{op.total_ms:.3f}", str(op.count), f"{op.share:.1%}")
    by_node = Table(title=f"top {top} nodes", header_style="bold")
    for header in ("node", "op type", "ms / run", "share"):
        by_node.add_column(header, justify="left" if header in ("node", "op type") else "right")
    for node in report.by_node[:top]:
        by_node.add_row(node.node, node.op_type, f"{node.total_ms:.3f}", f"{node.share:.1%}")
    return [by_op, by_node]
