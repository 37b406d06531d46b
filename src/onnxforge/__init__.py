"""onnxforge: load, check, simplify, quantize, export and run ONNX models, with the onnxruntime API.

The engine is importable straight from here, as from ``onnxruntime``::

    import onnxforge as ort
    sess = ort.InferenceSession("model.onnx")
    outputs = sess.run(None, {"input": x})
"""

from onnxforge._errors import (
    EngineError,
    EPFail,
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    ModelLoaded,
    NoModel,
    NoSuchFile,
    NotImplemented,
    OnnxForgeError,
    RuntimeException,
)
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
from onnxforge.runtime.registry import kernel
from onnxforge.runtime.session import InferenceSession

__version__ = "0.1.0"


def get_available_providers() -> list[str]:
    return ["CPUExecutionProvider"]


def get_all_providers() -> list[str]:
    return ["CPUExecutionProvider"]


def get_device() -> str:
    return "CPU"


def get_version_string() -> str:
    return __version__


__all__ = [
    "EPFail",
    "EngineError",
    "ExecutionMode",
    "ExecutionOrder",
    "Fail",
    "GraphOptimizationLevel",
    "InferenceSession",
    "InvalidArgument",
    "InvalidGraph",
    "InvalidProtobuf",
    "ModelLoaded",
    "ModelMetadata",
    "NoModel",
    "NoSuchFile",
    "NodeArg",
    "NotImplemented",
    "OnnxForgeError",
    "OrtValue",
    "RunOptions",
    "SessionOptions",
    "RuntimeException",
    "get_all_providers",
    "get_available_providers",
    "get_device",
    "get_version_string",
    "kernel",
]
