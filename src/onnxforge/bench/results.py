"""The benchmark's data: the measurement :class:`Config`, one :class:`Row` per model and thread count, the
ORT-vs-ORT :class:`SelfCheck`, and the :class:`Result` with its summaries (geomean ratio, dispatch µs/node).

Kept apart from the harness so that reports and tests can build and read results without measuring.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
from dataclasses import dataclass, field
from typing import Any

from onnxforge.bench.suite import PROBE_NAME


@dataclass(frozen=True)
class Config:
    """How hard to measure. ``full()`` for reports, ``quick()`` for a sanity pass, tests go smaller still."""

    blocks: int = 12
    target_block_s: float = 0.4
    pause_s: float = 0.3
    budget_s: float = 45.0  # per model and thread count; slow models get fewer (>= 3) blocks
    creation_repeats: int = 5
    reference: bool = True
    reference_timeout_s: float = 60.0
    reference_runs: int = 3
    rss: bool = True
    rss_runs: int = 3
    self_check_model: str = "squeezenet"

    @classmethod
    def full(cls) -> Config:
        return cls()

    @classmethod
    def quick(cls) -> Config:
        return cls(
            blocks=8, target_block_s=0.1, pause_s=0.2, budget_s=15.0, creation_repeats=3, reference_runs=1, rss_runs=2
        )


@dataclass
class Row:
    """One model at one thread count. ``ratio`` = onnxforge / ORT latency (> 1: onnxforge slower), the median of
    per-block ratios; the ``*_ms`` are medians over all runs."""

    model: str
    source: str
    threads: int
    nodes: int = 0
    onnxforge_ms: float | None = None
    ort_ms: float | None = None
    # The dispatch probe only: onnxforge with plan fusion off (ORT_DISABLE_ALL), one step per node.
    unfused_ms: float | None = None
    ratio: float | None = None
    runs: dict[str, int] = field(default_factory=dict)
    reference_ms: float | None = None
    reference_status: str = "off"
    vs_reference: float | None = None
    create_onnxforge_ms: float | None = None
    create_ort_ms: float | None = None
    create_ratio: float | None = None
    rss_onnxforge_mb: float | None = None
    rss_ort_mb: float | None = None
    rss_ratio: float | None = None
    match: bool | None = None
    max_abs_diff: float | None = None
    error: str = ""


@dataclass
class SelfCheck:
    """ORT against a second ORT session of the same model: ``ratio`` should be ~1.0."""

    model: str
    threads: int
    a_ms: float
    b_ms: float
    ratio: float


@dataclass
class Result:
    rows: list[Row]
    geomean: dict[int, float | None]
    dispatch_us_per_node: dict[int, dict[str, float | None]]
    self_check: list[SelfCheck]
    meta: dict[str, Any]


def ratio_of(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None and b > 0 else None


def geomean(values: list[float]) -> float | None:
    good = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in good) / len(good)) if good else None


def assemble(rows: list[Row], checks: list[SelfCheck], threads: list[int], config: Config) -> Result:
    """Summaries over the rows: the geomean ratio per thread count (probe excluded) and the probe's µs/node."""
    geo = {t: geomean([r.ratio for r in rows if r.threads == t and r.model != PROBE_NAME and r.ratio]) for t in threads}
    dispatch: dict[int, dict[str, float | None]] = {}
    for row in rows:
        if row.model == PROBE_NAME and row.nodes:
            per_node = {"onnxforge": row.onnxforge_ms, "ort": row.ort_ms, "onnxforge_unfused": row.unfused_ms}
            dispatch[row.threads] = {
                k: (v * 1000.0 / row.nodes if v is not None else None) for k, v in per_node.items()
            }
    return Result(rows, geo, dispatch, checks, environment(config, threads))


def environment(config: Config, threads: list[int]) -> dict[str, Any]:
    import numpy
    import onnx

    import onnxforge

    try:
        from onnxforge.bench.measure import real_onnxruntime

        ort_version = real_onnxruntime().__version__
    except Exception:
        ort_version = "unavailable"
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {
            "onnxforge": onnxforge.__version__,
            "onnxruntime": ort_version,
            "onnx": onnx.__version__,
            "numpy": numpy.__version__,
        },
        "threads": threads,
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
    }
