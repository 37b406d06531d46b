"""Typed errors whose class names mirror onnxruntime's, so ORT users' ``except`` clauses keep working.

ORT raises these from ``onnxruntime.capi.onnxruntime_pybind11_state``; our shim exposes the same names
there (see ``runtime/ort.py``). All derive from :class:`OnnxForgeError`, itself a ``RuntimeError``
as ORT's are.
"""

from __future__ import annotations


class OnnxForgeError(RuntimeError):
    """Base of every error onnxforge raises on purpose."""


class Fail(OnnxForgeError):
    """A generic failure, usually while running a node."""


class InvalidArgument(OnnxForgeError):
    """The caller passed something wrong: a missing or unknown input, a wrong dtype, rank or dim."""


class NoSuchFile(OnnxForgeError):
    """A model (or external-data) file does not exist."""


class NoModel(OnnxForgeError):
    """No model was loaded."""


class EngineError(OnnxForgeError):
    """An internal engine error."""


class RuntimeException(OnnxForgeError):
    """A runtime failure that is not the caller's fault."""


class InvalidProtobuf(OnnxForgeError):
    """The bytes are not a valid ONNX protobuf."""


class ModelLoaded(OnnxForgeError):
    """The model is already loaded."""


class NotImplemented(OnnxForgeError):  # noqa: A001 - the name is ORT's
    """An operator, attribute or type the engine does not implement."""


class InvalidGraph(OnnxForgeError):
    """The graph breaks the ONNX rules: bad types, too-new IR, dangling values, cycles."""


class EPFail(OnnxForgeError):
    """An execution-provider failure."""


__all__ = [
    "EPFail",
    "EngineError",
    "Fail",
    "InvalidArgument",
    "InvalidGraph",
    "InvalidProtobuf",
    "ModelLoaded",
    "NoModel",
    "NoSuchFile",
    "NotImplemented",
    "OnnxForgeError",
    "RuntimeException",
]
