"""The benchmark harness: onnxforge vs onnxruntime (and onnx.reference) on the suite or a user model.

Per model, in this one process and at each thread count (ORT's ``intra_op_num_threads`` = onnxforge's):
median latency of onnxforge and ORT from alternating blocks (:func:`measure.alternating_blocks`), and a
few onnx.reference runs (skipped when its first run passes 60 s). Once per model: session-creation time
(median of a few), whether onnxforge's outputs match ORT's (rtol 1e-3, atol 1e-4), and peak RSS of each
engine in its own child process, minus a baseline child that only imports numpy and onnx.

Every per-model failure (a missing kernel, a failed export) becomes an error in that model's row.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from onnxforge.bench import measure
from onnxforge.bench.results import Config, Result, Row, SelfCheck, assemble, ratio_of
from onnxforge.bench.suite import PROBE_NAME, Case, CaseSpec, default_cache_dir, model_case, select


def _error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:240]}"


class Harness:
    """Runs the measurements for a list of cases and assembles a :class:`Result`."""

    def __init__(self, threads: list[int], config: Config, show_progress: bool = True) -> None:
        self.threads = threads
        self.config = config
        self.console = Console(stderr=True)
        self.show_progress = show_progress
        self._baseline_mb: float | None = None
        self._progress: Progress | None = None
        self._task: Any = None

    @contextmanager
    def _bar(self, total: int) -> Iterator[None]:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
        )
        # No auto-refresh: rich's refresh thread would wake 10 times a second inside the timed blocks, render in
        # Python holding the GIL, and take a core from the engine being timed. onnxforge runs Python between its
        # NumPy calls, ORT releases the GIL for a whole run, so only onnxforge paid: alternating blocks with the
        # refresh thread on and off, on/off = 1.03 (mobilenetv2_b1, 1 thread), 1.01 and 1.08 (mobilenetv2_b1,
        # squeezenet, 2 threads). The bar is redrawn between blocks instead (_status, _advance).
        with Progress(
            *columns, console=self.console, transient=True, disable=not self.show_progress, auto_refresh=False
        ) as progress:
            self._progress, self._task = progress, progress.add_task("bench", total=total)
            try:
                yield
            finally:
                self._progress = None

    def _status(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text, refresh=True)

    def _advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)
            self._progress.refresh()

    # ----- one model -----------------------------------------------------------------------------------
    def bench(self, case: Case) -> list[Row]:
        rows = [Row(case.name, case.source, t, case.node_count) for t in self.threads]
        sessions: dict[tuple[str, int], Any] = {}
        engines = ("ort", "onnxforge", measure.UNFUSED) if case.name == PROBE_NAME else ("ort", "onnxforge")
        for engine in engines:
            for t in self.threads:
                try:
                    sessions[engine, t] = measure.make_session(engine, case.path, t)
                except Exception as exc:
                    self._fail(rows, engine, exc)
                    break
        self._check_outputs(case, sessions, rows)
        reference = self._reference(case, rows) if self.config.reference else None
        for row in rows:
            self._status(f"{case.name} @ {row.threads} thread(s)")
            runners = {
                e: measure.runner(sessions[e, row.threads], case.feeds) for e in engines if (e, row.threads) in sessions
            }
            try:
                samples = measure.alternating_blocks(
                    runners,
                    self.config.blocks,
                    self.config.target_block_s,
                    self.config.pause_s,
                    on_block=self._advance,
                    budget_s=self.config.budget_s,
                )
                for _ in range(self.config.blocks - len(next(iter(samples.values()), []))):
                    self._advance()  # blocks dropped by the budget still count as done
            except Exception as exc:
                self._fail(rows, "run", exc)
                samples = {}
            row.runs = {engine: len(measure.flat(blocks)) for engine, blocks in samples.items()}
            row.ort_ms = measure.median_ms(measure.flat(samples["ort"])) if samples.get("ort") else None
            row.onnxforge_ms = (
                measure.median_ms(measure.flat(samples["onnxforge"])) if samples.get("onnxforge") else None
            )
            if samples.get(measure.UNFUSED):
                row.unfused_ms = measure.median_ms(measure.flat(samples[measure.UNFUSED]))
            if samples.get("ort") and samples.get("onnxforge"):
                row.ratio = measure.paired_ratio(samples["onnxforge"], samples["ort"])
            if reference is not None and row.reference_status == "ok":
                self._reference_runs(reference, row)
            row.vs_reference = ratio_of(row.reference_ms, row.onnxforge_ms)
        self._creation(case, rows)
        if self.config.rss:
            self._rss(case, rows)
        sessions.clear()
        return rows

    def _fail(self, rows: list[Row], stage: str, exc: BaseException) -> None:
        for row in rows:
            row.error = row.error or f"{stage}: {_error(exc)}"

    def _check_outputs(self, case: Case, sessions: dict[tuple[str, int], Any], rows: list[Row]) -> None:
        t = self.threads[0]
        if ("ort", t) not in sessions or ("onnxforge", t) not in sessions:
            return
        self._status(f"{case.name}: checking outputs")
        try:
            theirs = sessions["ort", t].run(None, case.feeds)
        except Exception as exc:
            self._fail(rows, "ort run", exc)
            del sessions["ort", t]
            return
        try:
            ours = sessions["onnxforge", t].run(None, case.feeds)
        except Exception as exc:
            self._fail(rows, "onnxforge run", exc)
            for key in [k for k in sessions if k[0] == "onnxforge"]:
                del sessions[key]
            return
        match, worst, problem = measure.compare_outputs(ours, theirs)
        for row in rows:
            row.match, row.max_abs_diff = match, worst
            if problem:
                row.error = row.error or f"mismatch: {problem}"

    def _reference(self, case: Case, rows: list[Row]) -> measure.ReferenceRunner | None:
        """One first run under a deadline decides whether onnx.reference is measured at all."""
        self._status(f"{case.name}: onnx.reference first run")
        time.sleep(self.config.pause_s)
        runner: measure.ReferenceRunner | None = None
        try:
            runner = measure.ReferenceRunner(case.path, case.feeds)
            runner.time_runs(self.threads[0], 1, timeout_s=self.config.reference_timeout_s)
            status = "ok"
        except measure.ReferenceTimeout:
            status, runner = f"skipped (>{self.config.reference_timeout_s:.0f} s)", None
        except Exception as exc:
            status, runner = f"error: {_error(exc)}", None
        for row in rows:
            row.reference_status = status
        return runner

    def _reference_runs(self, reference: measure.ReferenceRunner, row: Row) -> None:
        done = reference.samples.get(row.threads, [])
        first = next(iter(reference.samples.values()))[0]
        # A slow reference gets a single run: the point is the order of magnitude, not a tight median.
        wanted = 1 if first > 5.0 else self.config.reference_runs
        if len(done) < wanted:
            self._status(f"{row.model} @ {row.threads}: onnx.reference")
            time.sleep(self.config.pause_s)
            try:
                reference.time_runs(row.threads, wanted - len(done))
            except Exception as exc:
                row.reference_status = f"error: {_error(exc)}"
                return
        row.reference_ms = measure.median_ms(reference.samples[row.threads])

    def _creation(self, case: Case, rows: list[Row]) -> None:
        self._status(f"{case.name}: session creation")
        medians: dict[str, float | None] = {}
        for engine in ("ort", "onnxforge"):
            try:
                times = measure.creation_seconds(engine, case.path, self.threads[0], self.config.creation_repeats)
                medians[engine] = statistics.median(times) * 1000.0
            except Exception:
                medians[engine] = None
        for row in rows:
            row.create_ort_ms, row.create_onnxforge_ms = medians["ort"], medians["onnxforge"]
            row.create_ratio = ratio_of(row.create_onnxforge_ms, row.create_ort_ms)

    def _rss(self, case: Case, rows: list[Row]) -> None:
        """Peak RSS minus the baseline child's, per engine; an engine that cannot run the model gets None."""
        self._status(f"{case.name}: peak RSS")
        try:
            if self._baseline_mb is None:
                self._baseline_mb = measure.peak_rss_mb("baseline", case.path, case.feeds, 0)
        except Exception:
            return
        peaks: dict[str, float | None] = {}
        for engine in ("ort", "onnxforge"):
            try:
                peaks[engine] = (
                    measure.peak_rss_mb(engine, case.path, case.feeds, self.config.rss_runs) - self._baseline_mb
                )
            except Exception:
                peaks[engine] = None
        for row in rows:
            row.rss_ort_mb, row.rss_onnxforge_mb = peaks["ort"], peaks["onnxforge"]
            row.rss_ratio = ratio_of(row.rss_onnxforge_mb, row.rss_ort_mb)

    # ----- ORT vs ORT ----------------------------------------------------------------------------------
    def self_check(self, case: Case) -> list[SelfCheck]:
        """Two ORT sessions through the same alternating blocks: any ratio far from 1 is harness bias."""
        checks = []
        for t in self.threads:
            self._status(f"self-check ORT vs ORT on {case.name} @ {t}")
            a, b = (measure.make_session("ort", case.path, t) for _ in range(2))
            samples = measure.alternating_blocks(
                {"a": measure.runner(a, case.feeds), "b": measure.runner(b, case.feeds)},
                self.config.blocks,
                self.config.target_block_s,
                self.config.pause_s,
                on_block=self._advance,
            )
            a_ms, b_ms = measure.median_ms(measure.flat(samples["a"])), measure.median_ms(measure.flat(samples["b"]))
            checks.append(
                SelfCheck(case.name, t, a_ms, b_ms, measure.paired_ratio(samples["a"], samples["b"]) or math.nan)
            )
        return checks

    # ----- the whole run -------------------------------------------------------------------------------
    def run(self, specs: list[CaseSpec] | list[Case], cache_dir: Path, self_check: Case | None = None) -> Result:
        total = len(specs) * len(self.threads) * self.config.blocks + (
            len(self.threads) * self.config.blocks if self_check else 0
        )
        rows: list[Row] = []
        with self._bar(total):
            for spec in specs:
                rows += self._bench_spec(spec, cache_dir)
            checks = self.self_check(self_check) if self_check is not None else []
        return assemble(rows, checks, self.threads, self.config)

    def _bench_spec(self, spec: CaseSpec | Case, cache_dir: Path) -> list[Row]:
        if isinstance(spec, Case):
            case = spec
        else:
            self._status(f"{spec.name}: preparing")
            try:
                case = spec.resolve(cache_dir)
            except Exception as exc:
                for _ in range(len(self.threads) * self.config.blocks):
                    self._advance()
                return [Row(spec.name, spec.source, t, error=f"prepare: {_error(exc)}") for t in self.threads]
        return self.bench(case)


def run_suite(
    models: list[str] | None,
    threads: list[int],
    quick: bool,
    config: Config | None = None,
    cache_dir: Path | None = None,
    show_progress: bool = True,
    self_check: bool = True,
) -> Result:
    """Benchmark the suite (or the named ``models`` of it) at each thread count."""
    config = config or (Config.quick() if quick else Config.full())
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    harness = Harness(threads, config, show_progress)
    check_case = _self_check_case(config, cache) if self_check else None
    return harness.run(select(models), cache, self_check=check_case)


def bench_model(
    path: str | Path,
    dims: dict[str, int],
    threads: list[int],
    quick: bool = False,
    config: Config | None = None,
    show_progress: bool = True,
    name: str | None = None,
) -> Result:
    """Benchmark one user model; symbolic input dims come from ``dims`` (``--dim NAME=VALUE``)."""
    config = config or (Config.quick() if quick else Config.full())
    case = model_case(Path(path), dims, name=name)
    return Harness(threads, config, show_progress).run([case], Path(path).parent)


def run_self_check(
    threads: list[int],
    quick: bool = False,
    config: Config | None = None,
    show_progress: bool = True,
    model: str | Path | None = None,
) -> list[SelfCheck]:
    """Only the ORT-vs-ORT check (``--self-check``), on a suite model (default squeezenet) or a .onnx path."""
    config = config or (Config.quick() if quick else Config.full())
    harness = Harness(threads, config, show_progress)
    if model is not None and Path(model).suffix == ".onnx":
        case = model_case(Path(model))
    else:
        case = _self_check_case(config, default_cache_dir(), str(model) if model else None)
    with harness._bar(len(threads) * config.blocks):
        return harness.self_check(case)


def _self_check_case(config: Config, cache_dir: Path, name: str | None = None) -> Case:
    spec_by_name: dict[str, Callable[[Path], Case]] = {s.name: s.make for s in select(None)}
    return spec_by_name[name or config.self_check_model](cache_dir)
