"""Helpers for the CLI tests: run the real CLI in a fresh process, with or without the onnxruntime shim."""

from __future__ import annotations

import os
import subprocess
import sys

from onnxforge.runtime.ort import shim_path


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment minus any onnxforge shim on PYTHONPATH, so plain `python` means real onnxruntime."""
    env = dict(os.environ)
    kept = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != shim_path()]
    env.pop("PYTHONPATH", None)
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: a fresh process through the console-script function, real stdout/stderr."""
    command = [sys.executable, "-c", "from onnxforge.cli.main import main; main()", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env or clean_env(COLUMNS="200"), timeout=timeout, check=False
    )


def run_python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Plain ``python ARGS`` without the shim: ``import onnxruntime`` is the real one (if installed)."""
    command = [sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=timeout, check=False)
