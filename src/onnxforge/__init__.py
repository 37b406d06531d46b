"""onnxforge: load, check, simplify, quantize, export and run ONNX models, with the onnxruntime API.

The engine is importable straight from here, as from ``onnxruntime``::

    import onnxforge as ort
    sess = ort.InferenceSession("model.onnx")
    outputs = sess.run(None, {"input": x})
"""

from onnxforge._platform import tune_openblas

tune_openblas()  # must run before the first numpy import (see _platform.py)

from onnxforge._errors import (  # noqa: E402
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

# Imported last: it installs the session's graph optimizer (the runtime cannot import the passes layer).
from onnxforge.passes import simplify  # noqa: E402
from onnxforge.runtime.options import (  # noqa: E402
    ExecutionMode,
    ExecutionOrder,
    GraphOptimizationLevel,
    ModelMetadata,
    NodeArg,
    RunOptions,
    SessionOptions,
)
from onnxforge.runtime.ortvalue import OrtValue  # noqa: E402
from onnxforge.runtime.registry import kernel  # noqa: E402
from onnxforge.runtime.session import InferenceSession  # noqa: E402

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
    "simplify",
]
