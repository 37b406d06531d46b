"""``onnxforge exec -- CMD ARGS...``: run a command in which ``import onnxruntime`` resolves to onnxforge.

The shim folder (:func:`onnxforge.runtime.ort.shim_path`) goes first on ``PYTHONPATH``, ahead of any
existing entries, so every Python process the command starts, children included, imports onnxforge's
``onnxruntime`` before site-packages' one. Interpreters started with ``-I`` or ``-E`` ignore
``PYTHONPATH`` and therefore get the real onnxruntime.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from typing import Annotated

import typer

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.ort import shim_path

# Lets a program (or a test) tell that it runs under `onnxforge exec`.
MARKER_VARIABLE = "ONNXFORGE_EXEC"


def shimmed_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with the shim first on ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join([shim_path(), existing]) if existing else shim_path()
    env[MARKER_VARIABLE] = "1"
    return env


def exit_status(returncode: int) -> int:
    """The shell's convention for a child killed by signal N (128 + N), so ``$?`` reads the same as without us."""
    return 128 - returncode if returncode < 0 else returncode


def run_shimmed(command: list[str]) -> int:
    """Run ``command`` with the shimmed environment and return its exit status."""
    process = subprocess.Popen(command, env=shimmed_environment())
    if threading.current_thread() is not threading.main_thread():  # signal handlers are main-thread only
        return exit_status(process.wait())
    # Ctrl-C reaches the child too (same process group); let the child decide and report its status.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return exit_status(process.wait())
    finally:
        signal.signal(signal.SIGINT, previous)


def exec_command(
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="CMD", help="The command and its arguments; put `--` before it.", show_default=False),
    ] = None,
) -> None:
    """Run CMD with `import onnxruntime` resolving to onnxforge in every Python process it starts."""
    if not command:
        raise InvalidArgument("exec needs a command, e.g. `onnxforge exec -- python script.py`")
    code = run_shimmed(command)
    if code:
        raise typer.Exit(code=code)
