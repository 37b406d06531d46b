"""The ``onnxforge`` typer app: the global ``--debug`` option, one-line errors, and the subcommands.

Each subcommand lives in its own module and knows nothing of error handling; :func:`guarded` wraps it
so that onnxforge's typed errors and ``OSError`` become one red ``error: Class: message`` line on stderr
and exit code 1, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from onnxforge._errors import OnnxForgeError
from onnxforge.cli import bench as bench_cmd
from onnxforge.cli import conformance as conformance_cmd
from onnxforge.cli import demo as demo_cmd
from onnxforge.cli import exec as exec_cmd
from onnxforge.cli import info as info_cmd
from onnxforge.cli import optimize as optimize_cmd
from onnxforge.cli import run as run_cmd
from onnxforge.cli import simplify as simplify_cmd

P = ParamSpec("P")
R = TypeVar("R")

# Errors a user can cause (bad path, bad model, bad input); anything else is a bug and keeps its traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (OnnxForgeError, OSError)

app = typer.Typer(
    name="onnxforge",
    help="Load, inspect and run ONNX models with onnxforge's NumPy engine.",
    no_args_is_help=True,
    add_completion=False,
    # Locals of numpy-heavy frames would flood the terminal; --debug wants the stack, not the arrays.
    pretty_exceptions_show_locals=False,
)


class _State:
    """Global options, set by the app callback, which runs before every subcommand."""

    debug: bool = False


def error_line(exc: BaseException) -> Text:
    """``error: Class: message`` folded onto one line, since multi-line ORT messages would break the contract."""
    message = " ".join(str(exc).split())
    return Text(f"error: {type(exc).__name__}: {message}", style="bold red")


def print_error(exc: BaseException) -> None:
    # A fresh Console each time: CliRunner and pytest swap sys.stderr between calls.
    Console(stderr=True, highlight=False, soft_wrap=True).print(error_line(exc))


def guarded(func: Callable[P, R]) -> Callable[P, R]:
    """Turn expected errors raised by ``func`` into one error line and exit code 1 (unless ``--debug``)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except EXPECTED_ERRORS as exc:
            if _State.debug:
                raise
            print_error(exc)
            raise typer.Exit(code=1) from None

    return wrapper


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback when a command fails.")] = False,
) -> None:
    """onnxforge: a NumPy ONNX engine with the onnxruntime API."""
    _State.debug = debug


app.command("demo")(guarded(demo_cmd.demo))
app.command("run")(guarded(run_cmd.run))
app.command("info")(guarded(info_cmd.info))
app.command("simplify")(guarded(simplify_cmd.simplify_command))
app.command("optimize")(guarded(optimize_cmd.optimize_command))
app.command("conformance")(guarded(conformance_cmd.conformance))
app.command("bench", context_settings=bench_cmd.PASSTHROUGH)(guarded(bench_cmd.bench))
app.command("profile", context_settings=bench_cmd.PASSTHROUGH)(guarded(bench_cmd.profile))
app.command(
    "exec",
    # Everything after the command name belongs to CMD, including options like `python -c ...`.
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)(guarded(exec_cmd.exec_command))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``onnxforge = onnxforge.cli.main:main``)."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="onnxforge")


if __name__ == "__main__":
    main()
