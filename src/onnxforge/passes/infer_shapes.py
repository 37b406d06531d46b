"""Shape and type inference (onnx's), quiet, non-strict, and for tensor values only.

The shape-aware rules (shape folding, no-op Reshape/Expand/Slice, broadcast checks) read the dims this
pass writes onto values. onnx's inference runs in non-strict mode with data propagation, so a graph it
cannot fully type still gets the shapes it can, and a failure leaves the shapes as they were.

The model goes to onnx through onnx-ir's ``call_onnx_api``, which detaches large initializers first so
this stays cheap on big models (and works above protobuf's 2 GB). The merge back is our own rather than
onnx-ir's ``ShapeInferencePass``: that one assigns ``dtype`` on every value, which turns a sequence or
optional value (``SequenceEmpty``'s output, a Loop's carried sequence) into a tensor and makes the model
fail type checking. Here only tensor types are taken, and only where inference knows more.

A caller that already ran onnx's inference on the model as it is (a session does, to check types) applies
it with :func:`apply_inferred` instead, and tells the pipeline (``run_passes(shapes_inferred=True)``) to
skip this pass until a pass changes the model.

Only the inferred types are read back (``value_info``, inputs, outputs, initializers of each graph), not
the whole model: turning the inferred protobuf into a second onnx-ir model cost more than the inference.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import _c_api_utils

_log = logging.getLogger("onnxforge.passes")


def _infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)


def _merge(
    target: ir.Value,
    elem_type: int,
    dims: tuple[int | str | None, ...] | None,
    shapes: dict[tuple[int | str | None, ...], ir.Shape],
) -> bool:
    """Take an inferred tensor type (``dims`` None: no shape) where inference knows more than ``target``.

    Works on the inferred protobuf's numbers: building an onnx-ir value and shape for each of them, only to
    find most equal to what the target has, was most of this pass's time. Values with equal dims share one
    frozen ``ir.Shape`` from ``shapes`` (onnx-ir's way to share a shape; nothing here edits a shape in place,
    a pass that changes one assigns a new one), so a graph of many same-shaped values builds few."""
    if target.type is not None and not isinstance(target.type, ir.TensorType):
        return False
    if target.is_graph_input() or (target.is_graph_output() and target.shape is not None):
        return False  # a declared signature is the caller's, not inference's
    changed = False
    dtype = ir.DataType(elem_type)
    if target.type is None or target.dtype in (None, ir.DataType.UNDEFINED):
        target.type = ir.TensorType(dtype)
        changed = True
    if dims is not None and dtype == target.dtype:
        current = target.shape
        if current is None or (len(current) == len(dims) and not _same_dims(current, dims)):
            shape = shapes.get(dims)
            if shape is None:
                shape = shapes[dims] = ir.Shape(dims, frozen=True)
            target.shape = shape
            changed = True
    return changed


def _same_dims(shape: ir.Shape, dims: tuple[int | str | None, ...]) -> bool:
    for have, want in zip(shape, dims):
        if isinstance(have, int):
            if have != want:
                return False
        elif isinstance(want, int) or getattr(have, "value", have) != want:
            return False
    return True


def _proto_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and its subgraphs in the order of onnx-ir's ``Model.graphs()`` (node order, then attributes)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _proto_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _proto_graphs(sub)


def _dims(tensor_type: onnx.TypeProto.Tensor) -> tuple[int | str | None, ...] | None:
    if not tensor_type.HasField("shape"):
        return None
    return tuple(
        dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None) for dim in tensor_type.shape.dim
    )


class _InferredTypes:
    """A graph's inferred tensor types by name, as (element type, dims or None)."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self._infos: dict[str, onnx.ValueInfoProto] = {}
        for info in list(graph.input) + list(graph.value_info) + list(graph.output):
            self._infos[info.name] = info
        self._tensors = {tensor.name: tensor for tensor in graph.initializer if tensor.name not in self._infos}
        # A TypeProto's wire bytes -> what it says. Reading a type field by field costs ~1-2 us in Python,
        # its bytes a fraction of that, and most values of a model share their type with many others.
        self._by_bytes: dict[bytes, tuple[int, tuple[int | str | None, ...] | None] | None] = {}

    def get(self, name: str) -> tuple[int, tuple[int | str | None, ...] | None] | None:
        info = self._infos.get(name)
        if info is not None:
            key = info.type.SerializeToString()
            if key in self._by_bytes:
                return self._by_bytes[key]
            found = None
            if info.type.WhichOneof("value") == "tensor_type":  # only tensor types merge (onnx-ir reads no maps)
                tensor_type = info.type.tensor_type
                found = tensor_type.elem_type, _dims(tensor_type)
            self._by_bytes[key] = found
            return found
        tensor = self._tensors.get(name)
        if tensor is not None:
            return tensor.data_type, tuple(tensor.dims)
        return None


class InferShapesPass(ir.passes.InPlacePass):
    """Annotate tensor values with onnx-inferred shapes and element types; never changes the graph's nodes."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if any(value.type is None for graph in model.graphs() for value in graph.inputs):
            # onnx 1.23's inference (non-strict, data propagation) segfaults on a graph input without a type:
            # the session's engine copy of a model with map-typed inputs has them (onnxforge.ir.map_types).
            return ir.passes.PassResult(model, modified=False)
        try:
            inferred = _c_api_utils.call_onnx_api(_infer, model)
        except Exception as exc:  # inference is a help for the rules, not a requirement
            _log.debug("shape inference failed: %s", exc)
            return ir.passes.PassResult(model, modified=False)
        return ir.passes.PassResult(model, modified=apply_inferred(model, inferred.graph))


def apply_inferred(model: ir.Model, inferred: onnx.GraphProto) -> bool:
    """Merge the types onnx inferred for ``model`` (its main graph and subgraphs, as ``inferred``) into it."""
    graphs = list(model.graphs())
    proto_graphs = list(_proto_graphs(inferred)) if len(graphs) > 1 else [inferred]
    if len(proto_graphs) != len(graphs):  # cannot pair them up: the main graph is the one that matters
        graphs, proto_graphs = graphs[:1], proto_graphs[:1]
    modified = False
    shapes: dict[tuple[int | str | None, ...], ir.Shape] = {}
    for graph, graph_proto in zip(graphs, proto_graphs):
        known = _InferredTypes(graph_proto)
        for name, value in ir.convenience.create_value_mapping(graph, include_subgraphs=False).items():
            match = known.get(name)
            if match is not None and _merge(value, *match, shapes):
                modified = True
    return modified
