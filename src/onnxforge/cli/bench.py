"""``onnxforge bench`` and ``onnxforge profile``: thin doors into ``onnxforge.bench``.

``onnxforge bench [--models a,b] [--threads 1,2] [--quick] [--self-check] [MODEL --dim NAME=VALUE]`` runs
the suite (onnxforge vs onnxruntime vs onnx.reference) or one model; ``onnxforge profile MODEL`` prints
where onnxforge's time goes, per op type and per node (``--engine both``: op types side by side with
onnxruntime's). All options are the harness's own
(``python -m onnxforge.bench --help``).
"""

from __future__ import annotations

import typer

from onnxforge._errors import Fail

PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def bench(ctx: typer.Context) -> None:
    """Benchmark onnxforge against onnxruntime and onnx.reference (options: python -m onnxforge.bench --help)."""
    from onnxforge.bench.__main__ import main as bench_main

    code = bench_main(list(ctx.args))
    if code:
        raise Fail(f"the benchmark reported failures (exit code {code})")


def profile(ctx: typer.Context) -> None:
    """Profile a model per op type and per node: onnxforge profile MODEL [--dim NAME=VALUE] [--runs N] [--engine both]."""
    from onnxforge.bench.__main__ import main as bench_main

    code = bench_main(["--profile", *ctx.args])
    if code:
        raise Fail(f"profiling failed (exit code {code})")
