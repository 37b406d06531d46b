"""Type checking at load: onnx's strict type inference, so a type an op does not allow fails early."""

from __future__ import annotations

import onnx

from onnxforge._errors import InvalidGraph

# Problems that are not type errors: the engine reports unknown ops itself, with NotImplemented.
_NOT_TYPE_ERRORS = ("No Op registered", "No opset import for domain", "is not a registered function/op")
_PROTOBUF_LIMIT = 2**31 - 1


def check_types(proto: onnx.ModelProto, where: str) -> None:
    """Raise InvalidGraph when onnx's type inference rejects the graph (as ORT does at load)."""
    if proto.ByteSize() >= _PROTOBUF_LIMIT:
        return  # onnx cannot serialise it for inference; the kernels still check their inputs
    try:
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        message = str(exc)
        if any(marker in message for marker in _NOT_TYPE_ERRORS):
            return
        raise InvalidGraph(f"Load model from {where} failed: type or shape inference rejects the graph: {message}") from exc
