"""``python -m onnxforge.bench``: run the benchmark suite, one user model, the ORT-vs-ORT self-check, or a profile.

Examples::

    python -m onnxforge.bench --quick                      # the whole suite, fewer runs
    python -m onnxforge.bench --models resnet50,bert_b1 --threads 1,2
    python -m onnxforge.bench model.onnx --dim batch=1     # a user model
    python -m onnxforge.bench --self-check                 # ORT vs ORT: the ratio must be ~1.0
    python -m onnxforge.bench --profile model.onnx         # where onnxforge's time goes
    python -m onnxforge.bench --profile --engine both model.onnx   # ... and where ORT's goes, by op type
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from onnxforge.bench.harness import Config, bench_model, run_self_check, run_suite
from onnxforge.bench.report import render, write_reports


def parse_dims(values: Sequence[str]) -> dict[str, int]:
    dims = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.strip().lstrip("-").isdigit():
            raise argparse.ArgumentTypeError(f"--dim expects NAME=INT, got '{item}'")
        dims[name.strip()] = int(value)
    return dims


def parse_threads(text: str) -> list[int]:
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--threads expects a comma-separated list of ints, got '{text}'") from exc
    if not threads or any(t < 1 for t in threads):
        raise argparse.ArgumentTypeError("--threads needs positive thread counts")
    return threads


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m onnxforge.bench", description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="a .onnx file to benchmark instead of the suite")
    parser.add_argument("--models", help="comma-separated suite models (default: all)")
    parser.add_argument("--threads", type=parse_threads, default=[1, 2], help="thread counts, e.g. 1,2")
    parser.add_argument("--quick", action="store_true", help="fewer blocks and runs")
    parser.add_argument("--self-check", action="store_true", help="only time ORT against ORT (ratio ~1.0 expected)")
    parser.add_argument(
        "--dim", action="append", default=[], metavar="NAME=VALUE", help="value of a symbolic input dim"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip onnx.reference")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes")
    parser.add_argument("--profile", action="store_true", help="profile MODEL per op type instead of benchmarking")
    parser.add_argument(
        "--engine",
        default="onnxforge",
        choices=["onnxforge", "ort", "both"],
        help="engine for --profile (both: op types side by side, onnxforge vs ORT)",
    )
    parser.add_argument("--runs", type=int, default=5, help="profiled runs for --profile")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="torch export cache (default benchmarks/cache)")
    parser.add_argument("--no-write", action="store_true", help="print only, write no result files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Piped output (make, CI logs) would otherwise be squeezed to 80 columns and fold the table.
    console = Console(width=None if sys.stdout.isatty() else 140)
    try:
        dims = parse_dims(args.dim)
    except argparse.ArgumentTypeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    base = Config.quick() if args.quick else Config.full()
    config = Config(
        **{
            **{k: getattr(base, k) for k in base.__dataclass_fields__},
            "reference": not args.no_reference,
            "rss": not args.no_rss,
        }
    )

    if args.self_check:
        checks = run_self_check(args.threads, config=config)
        for check in checks:
            console.print(
                f"ORT vs ORT on {check.model} at {check.threads} thread(s): {check.a_ms:.3f} / {check.b_ms:.3f} ms = {check.ratio:.3f}"
            )
        return 0
    if args.profile:
        if not args.model:
            console.print("[red]error:[/red] --profile needs a MODEL")
            return 2
        from onnxforge.bench.profile import profile_comparison, profile_report, render_comparison, render_profile

        try:
            if args.engine == "both":
                console.print(render_comparison(*profile_comparison(args.model, dims, args.runs, args.threads[0])))
                return 0
            report = profile_report(args.model, dims, runs=args.runs, threads=args.threads[0], engine=args.engine)
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            return 2
        for table in render_profile(report):
            console.print(table)
        return 0
    if args.model:
        try:
            result = bench_model(args.model, dims, args.threads, config=config)
        except ValueError as exc:  # a symbolic dim without --dim
            console.print(f"[red]error:[/red] {exc}")
            return 2
        tag = f"-{Path(args.model).stem}"
    else:
        models = [m.strip() for m in args.models.split(",")] if args.models else None
        try:
            result = run_suite(models, args.threads, args.quick, config=config, cache_dir=args.cache_dir)
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            return 2
        tag = "-quick" if args.quick else ""
    render(result, console)
    if not args.no_write:
        # A user model's report must not replace the suite's latest.md.
        paths = write_reports(result, args.out, tag=tag, latest=not args.model)
        console.print(f"wrote {', '.join(str(p) for p in paths)}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
