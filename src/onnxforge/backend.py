"""``onnxforge.backend``: an ``onnx.backend.base.Backend``, so onnx's own ``BackendTest`` can drive onnxforge."""

from __future__ import annotations

from typing import Any

import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from onnxforge.runtime.session import InferenceSession


class OnnxForgeRep(BackendRep):
    """A prepared model: feeds positional inputs to the session's non-initializer inputs in order."""

    def __init__(self, session: InferenceSession) -> None:
        self.session = session
        self.input_names = [arg.name for arg in session.get_inputs()]
        self.output_names = [arg.name for arg in session.get_outputs()]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, dict):
            feed = dict(inputs)
        elif isinstance(inputs, (list, tuple)):
            feed = dict(zip(self.input_names, inputs))
        else:  # a single array for a single-input model
            feed = {self.input_names[0]: inputs}
        outputs = self.session.run(None, feed)
        return namedtupledict("Outputs", self.output_names)(*outputs)


class OnnxForgeBackend(Backend):
    """Runs models on the onnxforge NumPy engine (CPU only)."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: onnx.ModelProto | str | bytes, device: str = "CPU", **kwargs: Any) -> OnnxForgeRep:
        source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
        return OnnxForgeRep(InferenceSession(source))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU", outputs_info: Any = None, **kwargs: Any
    ) -> tuple[Any, ...]:
        raise NotImplementedError("onnxforge runs whole models; the node tests are run as models")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


prepare = OnnxForgeBackend.prepare
run_model = OnnxForgeBackend.run_model
run_node = OnnxForgeBackend.run_node
supports_device = OnnxForgeBackend.supports_device
is_compatible = OnnxForgeBackend.is_compatible

__all__ = ["OnnxForgeBackend", "OnnxForgeRep", "is_compatible", "prepare", "run_model", "run_node", "supports_device"]
