"""Measurement primitives: sessions per engine, alternating timed blocks, onnx.reference, peak RSS.

Why alternating blocks: after a run, ORT's idle intra-op workers spin for a while, and on a 2-core machine
they steal the cores from whatever runs next. Timing all of ORT and then all of onnxforge (or interleaving
single runs) therefore biases the comparison either way. Blocks of k runs per engine, each followed by a
short sleep that lets the spinning stop, with the engine order flipped on every other block, give each
engine the same conditions. On a shared machine the background load drifts between blocks, so the ratio
of two engines is taken per block (adjacent in time, hence under the same load) and the median of those
block ratios is reported; the latency columns are medians over all runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

Runner = Callable[[], list[Any]]


class ReferenceTimeout(Exception):
    """onnx.reference's first run exceeded its budget."""


def real_onnxruntime() -> ModuleType:
    """The real ``onnxruntime`` (not onnxforge's shim, which would make ORT-vs-onnxforge meaningless)."""
    import onnxruntime

    origin = os.path.dirname(getattr(onnxruntime, "__file__", None) or "")
    if (
        "onnxforge" in origin
        or not hasattr(onnxruntime, "get_build_info")
        or "onnxforge" in onnxruntime.get_build_info()
    ):
        raise RuntimeError("'import onnxruntime' resolves to onnxforge's shim; run the benchmark without the shim")
    return onnxruntime


# onnxforge without graph or plan optimizations: the dispatch probe's per-step cost, with no chain fusion.
UNFUSED = "onnxforge-unfused"


def make_session(engine: str, path: Path, threads: int) -> Any:
    """An inference session of ``engine`` ('onnxforge', UNFUSED or 'ort') with ``threads`` intra-op threads."""
    if engine in ("onnxforge", UNFUSED):
        import onnxforge

        options = onnxforge.SessionOptions()
        options.intra_op_num_threads = threads
        if engine == UNFUSED:
            options.graph_optimization_level = onnxforge.GraphOptimizationLevel.ORT_DISABLE_ALL
        return onnxforge.InferenceSession(str(path), options)
    if engine == "ort":
        ort = real_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # everything else that affects speed stays at ORT's defaults
        options.log_severity_level = 3  # the light models' unused-initializer warnings would flood the terminal
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    raise ValueError(f"unknown engine '{engine}'")


def runner(session: Any, feeds: Mapping[str, np.ndarray]) -> Runner:
    feed = dict(feeds)
    return lambda: session.run(None, feed)


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000.0


def flat(blocks: Sequence[Sequence[float]]) -> list[float]:
    return [t for block in blocks for t in block]


def paired_ratio(numerator: Sequence[Sequence[float]], denominator: Sequence[Sequence[float]]) -> float | None:
    """Median over blocks of (median of block i of ``numerator``) / (median of block i of ``denominator``)."""
    ratios = [
        statistics.median(a) / statistics.median(b)
        for a, b in zip(numerator, denominator)
        if a and b and statistics.median(b) > 0
    ]
    return statistics.median(ratios) if ratios else None


def creation_seconds(engine: str, path: Path, threads: int, repeats: int) -> list[float]:
    """Wall time of building ``repeats`` sessions (the first pays for file-cache warm-up, like a user does)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        make_session(engine, path, threads)
        times.append(time.perf_counter() - start)
    return times


def alternating_blocks(
    runners: Mapping[str, Runner],
    blocks: int,
    target_block_s: float,
    pause_s: float,
    max_runs_per_block: int = 50,
    on_block: Callable[[], None] | None = None,
    budget_s: float | None = None,
    min_blocks: int = 3,
) -> dict[str, list[list[float]]]:
    """Per-block lists of per-run wall times for each runner, in alternating blocks (see the module docstring).

    Each runner gets as many runs per block as fit in ``target_block_s`` (at least 1), estimated from
    warm-up runs that are not recorded.
    """
    per_block: dict[str, int] = {}
    estimate_of: dict[str, float] = {}
    for name, run in runners.items():
        run()  # the first run pays one-off costs (lazy packing, allocator growth); estimate from the second
        start = time.perf_counter()
        run()
        estimate = estimate_of[name] = max(time.perf_counter() - start, 1e-6)
        per_block[name] = max(1, min(max_runs_per_block, math.floor(target_block_s / estimate)))
        time.sleep(pause_s)
    if budget_s is not None:
        # Slow models (seconds per run) would take minutes at the full block count; a few blocks suffice there.
        block_cost = sum(per_block[name] * estimate_of[name] + pause_s for name in runners)
        blocks = max(min(blocks, min_blocks), min(blocks, math.floor(budget_s / max(block_cost, 1e-9))))
    samples: dict[str, list[list[float]]] = {name: [] for name in runners}
    order = list(runners)
    for block in range(blocks):
        for name in order if block % 2 == 0 else reversed(order):
            run, times = runners[name], []
            for _ in range(per_block[name]):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            samples[name].append(times)
            time.sleep(pause_s)
        if on_block is not None:
            on_block()
    return samples


# ----- onnx.reference ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`ReferenceTimeout` after ``seconds`` (SIGALRM; only on the main thread, else no limit).

    onnx.reference is pure Python between NumPy calls, so the alarm lands within one kernel call.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(_signum: int, _frame: object) -> None:
        raise ReferenceTimeout(f"onnx.reference took over {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class ReferenceRunner:
    """onnx.reference's ReferenceEvaluator, run under a BLAS thread limit like the other engines."""

    def __init__(self, path: Path, feeds: Mapping[str, np.ndarray]) -> None:
        from onnx.reference import ReferenceEvaluator

        self.evaluator = ReferenceEvaluator(str(path))
        self.feeds = dict(feeds)
        self.samples: dict[int, list[float]] = {}  # per thread count, every timed run so far

    def time_runs(self, threads: int, runs: int, timeout_s: float | None = None) -> list[float]:
        times = []
        with threadpool_limits(limits=threads, user_api="blas"):
            for _ in range(runs):
                start = time.perf_counter()
                if timeout_s is None:
                    self.evaluator.run(None, self.feeds)
                else:
                    with _deadline(timeout_s):
                        self.evaluator.run(None, self.feeds)
                times.append(time.perf_counter() - start)
        self.samples.setdefault(threads, []).extend(times)
        return times


# ----- outputs -----------------------------------------------------------------------------------------
def compare_outputs(
    ours: Sequence[Any], theirs: Sequence[Any], rtol: float = 1e-3, atol: float = 1e-4
) -> tuple[bool, float, str]:
    """Whether onnxforge's outputs match ORT's: (match, max |difference|, first problem or '')."""
    if len(ours) != len(theirs):
        return False, math.inf, f"{len(ours)} outputs vs {len(theirs)}"
    worst = 0.0
    for index, (a, b) in enumerate(zip(ours, theirs)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False, math.inf, f"output {index}: shape {a.shape} vs {b.shape}"
        if a.dtype.kind not in "fc" or b.dtype.kind not in "fc":
            if not np.array_equal(a, b):
                return False, math.inf, f"output {index}: values differ"
            continue
        if a.size:
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            worst = max(worst, float(np.nanmax(diff)) if not np.isnan(diff).all() else 0.0)
        if not np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True):
            return False, worst, f"output {index}: max |diff| {worst:.3g}"
    return True, worst, ""


# ----- peak RSS in a child process ---------------------------------------------------------------------
_CHILD = "from onnxforge.bench.measure import child_main; child_main()"


def peak_rss_mb(
    engine: str, path: Path, feeds: Mapping[str, np.ndarray], runs: int, threads: int = 1, timeout_s: float = 600
) -> float:
    """Peak RSS (MB) of a fresh Python that imports numpy+onnx, then (unless engine='baseline') loads the
    model in ``engine`` and runs it ``runs`` times. The child reports its own peak (see :func:`own_peak_rss_kb`)."""
    with tempfile.TemporaryDirectory() as tmp:
        feeds_file = Path(tmp) / "feeds.npz"
        np.savez(feeds_file, **dict(feeds))
        argv = [sys.executable, "-c", _CHILD, engine, str(path), str(feeds_file), str(runs), str(threads)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"RSS child for {engine} failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])["maxrss_kb"] / 1024.0


def child_main() -> None:
    """Entry point of the RSS child: ``engine path feeds.npz runs threads``."""
    import onnx  # noqa: F401 - part of the baseline every engine child pays for

    engine, path, feeds_file, runs, threads = sys.argv[1:6]
    if engine != "baseline":
        with np.load(feeds_file) as data:
            feeds = {name: data[name] for name in data.files}
        session = make_session(engine, Path(path), int(threads))
        for _ in range(int(runs)):
            session.run(None, feeds)
    print(json.dumps({"maxrss_kb": own_peak_rss_kb()}))


def own_peak_rss_kb() -> int:
    """This process's peak RSS in KiB.

    VmHWM first: Linux carries ``ru_maxrss`` over ``execve`` from the forking parent, so a child started by a
    big harness process would report the harness's peak, not its own. VmHWM belongs to the new address space.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
