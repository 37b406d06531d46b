"""Map-typed values (``map(int64,tensor(float))``, ``seq(map(...))``) for the engine, which onnx-ir cannot read.

onnx-ir 1.1's deserializer raises ``NotImplementedError("Map types are not supported yet")`` for any value
declared with a map type, so every scikit-learn classifier converted with skl2onnx's defaults (its
probabilities go through ``ZipMap`` into ``seq(map(int64|string, float))``) failed to load. Workaround until
onnx-ir reads maps: the engine gets a copy of the model in which those declarations carry no type. Nothing
is lost for running it: the engine hands values of unknown type to the kernels as they are (ZipMap's list of
dicts out, a dict into DictVectorizer or CastMap), onnx's type check still runs on the original model, and a
session describes its inputs and outputs (``NodeArg.type``) from the original declarations.

The copy is for the engine only: a tool that saves the model back keeps the map types (it never gets here).
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx

from onnxforge._errors import NotImplemented
from onnxforge.ir.dtypes import proto_type_string
from onnxforge.ir.protos import graphs_in

_ML_DOMAIN = "ai.onnx.ml"  # the only standard domain whose ops make or take maps (ZipMap, DictVectorizer, CastMap)


def has_map(type_proto: onnx.TypeProto) -> bool:
    """Whether a value type is or holds a map (a sequence or optional of maps included)."""
    kind = type_proto.WhichOneof("value")
    if kind == "map_type":
        return True
    if kind == "sequence_type":
        return has_map(type_proto.sequence_type.elem_type)
    if kind == "optional_type":
        return has_map(type_proto.optional_type.elem_type)
    return False


def _declarations(graph: onnx.GraphProto) -> Iterator[onnx.ValueInfoProto]:
    yield from graph.input
    yield from graph.output
    yield from graph.value_info


def _map_typed(graph: onnx.GraphProto) -> Iterator[onnx.ValueInfoProto]:
    for inner in graphs_in(graph):
        for info in _declarations(inner):
            if has_map(info.type):
                yield info


def without_map_types(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` itself when nothing in it is map-typed, else a copy whose map-typed declarations are untyped.

    Only models importing ``ai.onnx.ml``, or declaring a map as a graph input or output, are searched: others
    cannot make or take a map, and walking every node of a large model would cost its session build ~0.3 ms."""
    graph = proto.graph
    if not any(entry.domain == _ML_DOMAIN for entry in proto.opset_import) and not any(
        has_map(info.type) for info in list(graph.input) + list(graph.output)
    ):
        return proto
    if next(_map_typed(graph), None) is None:
        return proto
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for info in list(_map_typed(copy.graph)):
        info.ClearField("type")
    return copy


def refuse_map_types(proto: onnx.ModelProto, where: str, action: str) -> None:
    """Raise NotImplemented, naming the values, when ``proto`` declares map-typed values: the graph tools
    (simplify, optimize) work on onnx-ir, which cannot read them, and would lose them writing the model back."""
    found = list(_map_typed(proto.graph))
    if not found:
        return
    listed = ", ".join(f"'{info.name}' ({proto_type_string(info.type)})" for info in found[:4])
    more = f" and {len(found) - 4} more" if len(found) > 4 else ""
    raise NotImplemented(
        f"{where}: cannot {action} a model with map-typed values {listed}{more}: onnx-ir, which the graph tools "
        "work on, cannot read map types. InferenceSession runs such models as they are."
    )
