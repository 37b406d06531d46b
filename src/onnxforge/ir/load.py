"""Load untrusted model files safely: typed errors, IR-version check, external data kept in the model folder."""

from __future__ import annotations

import dataclasses
import mmap
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import google.protobuf.message
import numpy as np
import onnx
import onnx_ir as ir

from onnxforge._errors import InvalidGraph, InvalidProtobuf, NoSuchFile
from onnxforge.ir.map_types import refuse_map_types
from onnxforge.ir.text import text_errors
from onnxforge.ir.wire import parse_with_weights_aside

ModelSource = str | os.PathLike | bytes | onnx.ModelProto


def load_model_proto(source: ModelSource) -> tuple[onnx.ModelProto, Path | None]:
    """Parse a path, bytes or ModelProto into a ModelProto (external data not yet loaded) and its folder."""
    proto, base_dir, _ = _load_proto(source, weights_aside=False)
    return proto, base_dir


def _load_proto(
    source: ModelSource, weights_aside: bool
) -> tuple[onnx.ModelProto, Path | None, Mapping[str, np.ndarray]]:
    """:func:`load_model_proto`; with ``weights_aside``, a file's big initializers come as arrays instead
    (see :mod:`onnxforge.ir.wire`), their tensors in the protobuf left without data."""
    if isinstance(source, onnx.ModelProto):
        return source, None, {}
    if isinstance(source, (bytes, bytearray, memoryview)):
        proto = onnx.ModelProto()
        try:
            proto.ParseFromString(bytes(source))
        except (google.protobuf.message.DecodeError, ValueError) as exc:
            raise InvalidProtobuf(f"Load model from bytes failed: not an ONNX protobuf ({exc})") from exc
        return proto, None, {}
    path = Path(os.fspath(source))
    if not path.is_file():
        raise NoSuchFile(f"Load model from {path} failed: file does not exist")
    aside: Mapping[str, np.ndarray] = {}
    try:
        if onnx.serialization.registry.get_format_from_file_extension(path.suffix) not in (None, "protobuf"):
            proto = onnx.load_model(str(path), load_external_data=False)  # a text format, known by the extension
        elif weights_aside and path.stat().st_size:
            proto, aside = parse_with_weights_aside(str(path))
        else:
            proto = _parse_mapped(path)
    except (google.protobuf.message.DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidProtobuf(f"Load model from {path} failed: not an ONNX protobuf ({exc})") from exc
    return proto, path.parent, aside


def _parse_mapped(path: Path) -> onnx.ModelProto:
    """Parse a protobuf file through a read-only memory map: protobuf copies what it keeps anyway, so reading
    the file into a bytes object first (as ``onnx.load_model`` does) was one more copy of every weight."""
    proto = onnx.ModelProto()
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            proto.ParseFromString(b"")
            return proto
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
            proto.ParseFromString(view)
    return proto


def _check_proto(proto: onnx.ModelProto, where: str) -> None:
    if not proto.HasField("graph"):
        raise InvalidProtobuf(f"Load model from {where} failed: the protobuf has no graph")
    if proto.ir_version > onnx.IR_VERSION:
        raise InvalidGraph(
            f"Load model from {where} failed: unsupported model IR version {proto.ir_version}, "
            f"max supported IR version {onnx.IR_VERSION}"
        )


_TENSOR_OR_GRAPH_KINDS = frozenset(
    {
        onnx.AttributeProto.TENSOR,
        onnx.AttributeProto.TENSORS,
        onnx.AttributeProto.GRAPH,
        onnx.AttributeProto.GRAPHS,
        onnx.AttributeProto.UNDEFINED,  # an untyped attribute may hold anything: look at every field
    }
)


def _external_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        if not len(node.attribute):  # ``len`` first: iterating a message's attributes wraps each one
            continue
        for attr in node.attribute:
            if attr.type not in _TENSOR_OR_GRAPH_KINDS:  # ints, floats, strings: no tensor inside
                continue
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _external_tensors(attr.g)
            for sub in attr.graphs:
                yield from _external_tensors(sub)


def check_external_data(proto: onnx.ModelProto, base_dir: Path | None, where: str) -> bool:
    """Refuse external-data locations that leave the model's folder or point at missing files.

    True when the model has external data at all."""
    found = False
    for tensor in _external_tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        found = True
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if base_dir is None:
            raise InvalidGraph(
                f"Model from {where}: initializer '{tensor.name}' uses external data '{location}', "
                "but the model was not loaded from a file, so there is no folder to read it from"
            )
        root = base_dir.resolve()
        target = (root / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(root):
            raise InvalidGraph(
                f"Model from {where}: initializer '{tensor.name}' points at external data '{location}', "
                f"which lies outside the model folder {root}"
            )
        if not target.is_file():
            raise NoSuchFile(f"Model from {where}: external data file '{location}' of '{tensor.name}' does not exist")
        offset = int(info.get("offset", 0))
        length = int(info.get("length", -1))
        size = target.stat().st_size
        dims_count = int(np.prod(tensor.dims, dtype=np.int64)) if tensor.dims else 1
        if offset < 0 or offset > size or (length >= 0 and offset + length > size):
            raise InvalidGraph(
                f"Model from {where}: external data of '{tensor.name}' (offset {offset}, length {length}) "
                f"runs past the end of '{location}' ({size} bytes)"
            )
        if dims_count < 0:
            raise InvalidGraph(f"Model from {where}: initializer '{tensor.name}' has negative dims {list(tensor.dims)}")
    return found


def _drop_initializer_inputs(graph: onnx.GraphProto) -> None:
    names = {tensor.name for tensor in graph.initializer}
    kept = [value for value in graph.input if value.name not in names]
    if len(kept) != len(graph.input):
        del graph.input[:]
        graph.input.extend(kept)


@dataclass(frozen=True)
class CheckedModel:
    """A parsed and checked model, ready to become onnx-ir (as often as asked: each call builds a new one)."""

    proto: onnx.ModelProto  # as parsed (or given)
    engine_proto: onnx.ModelProto  # after ``transform``; the same object when it changed nothing
    base_dir: Path | None
    where: str
    has_external_data: bool
    aside: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)  # initializer name -> array
    owns_engine_proto: bool = False  # parsed by the loader or copied by ``transform``: not the caller's object

    def to_ir(self, initializers_as_constants: bool = False) -> ir.Model:
        """The onnx-ir model, tensors referring to the protobuf's bytes (external data lazily mapped).

        ``initializers_as_constants``: below IR version 4 every initializer had to be listed as a graph input
        too; leave those out of the inputs, for a caller that treats them as constants (a session, as ORT
        does). Done on the protobuf when it is this loader's own (parsed here, or a copy), so onnx-ir does not
        deserialize their input declarations only for the caller to drop them: ~10 us each, and light
        DenseNet-121 lists 848. A caller's ModelProto is never edited."""
        if initializers_as_constants and self.engine_proto.ir_version < 4 and self.owns_engine_proto:
            _drop_initializer_inputs(self.engine_proto.graph)
        try:
            model = ir.serde.deserialize_model(self.engine_proto)
        except Exception as exc:  # onnx-ir raises plain exceptions for malformed graphs
            refuse_map_types(self.engine_proto, f"Load model from {self.where}", "load")
            raise InvalidGraph(f"Load model from {self.where} failed: {exc}") from exc
        if self.base_dir is not None and self.has_external_data:  # set_base_dir walks every tensor
            ir.external_data.set_base_dir(model.graph, self.base_dir)
        initializers = model.graph.initializers
        for name, array in self.aside.items():
            value = initializers.get(name)
            if value is not None and value.const_value is not None:
                tensor = value.const_value
                value.const_value = ir.Tensor(array, dtype=tensor.dtype, name=name, doc_string=tensor.doc_string)
        return model


def check_model(
    source: ModelSource, transform: Callable[[onnx.ModelProto], onnx.ModelProto] | None = None
) -> CheckedModel:
    """Parse and check a model; ``transform`` rewrites the checked proto (the engine expands functions there)."""
    proto, base_dir, aside = _load_proto(source, weights_aside=True)
    where = str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
    _check_proto(proto, where)
    has_external_data = check_external_data(proto, base_dir, where)
    with text_errors(proto, where):
        engine_proto = transform(proto) if transform is not None else proto
    owned = not isinstance(source, onnx.ModelProto) or engine_proto is not source
    return CheckedModel(proto, engine_proto, base_dir, where, has_external_data, aside, owned)


def load_model(
    source: ModelSource, transform: Callable[[onnx.ModelProto], onnx.ModelProto] | None = None
) -> tuple[ir.Model, onnx.ModelProto]:
    """Load a model for the engine: the onnx-ir model (external data lazily mapped) and the raw proto.

    ``transform`` rewrites the checked proto before it becomes onnx-ir (the engine expands functions there).
    """
    checked = check_model(source, transform)
    return checked.to_ir(), checked.proto
