"""The ``onnxruntime``-shaped namespace, and the shim that makes ``import onnxruntime`` resolve to it.

``onnxforge.ort`` re-exports this module. ``install()`` registers it (and its ``capi`` submodules) in
``sys.modules`` under the name ``onnxruntime`` for the current process; ``shim_path()`` is a folder to put
first on ``PYTHONPATH`` so that every Python process a command starts does the same (``onnxforge exec``).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from onnxforge import _errors
from onnxforge._log import set_default_logger_severity
from onnxforge.runtime.options import (
    ExecutionMode,
    ExecutionOrder,
    GraphOptimizationLevel,
    ModelMetadata,
    NodeArg,
    RunOptions,
    SessionOptions,
)
from onnxforge.runtime.ortvalue import OrtValue
from onnxforge.runtime.session import InferenceSession
from onnxforge.runtime.session_build import AVAILABLE_PROVIDERS

__version__ = "1.20.0"  # the ORT API level this namespace follows, for code that checks versions

_ERROR_NAMES = [
    "Fail",
    "InvalidArgument",
    "NoSuchFile",
    "NoModel",
    "EngineError",
    "RuntimeException",
    "InvalidProtobuf",
    "ModelLoaded",
    "NotImplemented",
    "InvalidGraph",
    "EPFail",
]


def get_available_providers() -> list[str]:
    return list(AVAILABLE_PROVIDERS)


def get_all_providers() -> list[str]:
    return list(AVAILABLE_PROVIDERS)


def get_device() -> str:
    return "CPU"


def get_version_string() -> str:
    return __version__


def get_build_info() -> str:
    return "onnxforge NumPy engine"


def _make_capi() -> tuple[types.ModuleType, types.ModuleType]:
    capi = types.ModuleType("onnxruntime.capi")
    state = types.ModuleType("onnxruntime.capi.onnxruntime_pybind11_state")
    for name in _ERROR_NAMES:
        setattr(state, name, getattr(_errors, name))
    for name, obj in {
        "SessionOptions": SessionOptions,
        "RunOptions": RunOptions,
        "GraphOptimizationLevel": GraphOptimizationLevel,
        "ExecutionMode": ExecutionMode,
        "ExecutionOrder": ExecutionOrder,
        "NodeArg": NodeArg,
        "ModelMetadata": ModelMetadata,
        "OrtValue": OrtValue,
    }.items():
        setattr(state, name, obj)
    capi.onnxruntime_pybind11_state = state  # type: ignore[attr-defined]
    capi._pybind_state = state  # type: ignore[attr-defined]
    return capi, state


capi, _state = _make_capi()


def install() -> types.ModuleType:
    """Make ``import onnxruntime`` (and its ``capi`` submodules) resolve to this namespace in this process."""
    module = sys.modules[__name__]
    sys.modules["onnxruntime"] = module
    sys.modules["onnxruntime.capi"] = capi
    sys.modules["onnxruntime.capi.onnxruntime_pybind11_state"] = _state
    sys.modules["onnxruntime.capi._pybind_state"] = _state
    return module


def shim_path() -> str:
    """A folder whose ``onnxruntime`` package installs the shim when imported; prepend it to PYTHONPATH."""
    return str(Path(__file__).parent / "_shim")


__all__ = [
    "ExecutionMode",
    "ExecutionOrder",
    "GraphOptimizationLevel",
    "InferenceSession",
    "ModelMetadata",
    "NodeArg",
    "OrtValue",
    "RunOptions",
    "SessionOptions",
    "capi",
    "get_all_providers",
    "get_available_providers",
    "get_device",
    "get_version_string",
    "install",
    "set_default_logger_severity",
    "shim_path",
]
