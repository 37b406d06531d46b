"""Type checking at load: onnx's strict type inference, so a type an op does not allow fails early.

onnx's inference wants a topologically sorted graph and serialises the whole model into C++. So it runs on a
light view of the model: large initializers turned into typed graph inputs, so weights are never copied
(small initializers stay, because shape inference reads their values: Reshape's target shape, for
instance), and nodes sorted (real exported models are sometimes unsorted, and the engine sorts them too).
Sorting reads every node's fields in Python (~2.5 us a node), and nearly every model comes sorted, so the
view is first inferred in the file's order; strict inference rejects a node whose input has no type yet,
so only a graph that fails is sorted and inferred again.

The same inference, with data propagation on, also gives the shapes the graph optimizer's rules read; the
session hands them over, so the optimizer does not infer them a second time on its own copy of the model.
Data propagation only adds shapes, so a graph strict inference accepts without it but rejects with it is
checked again without it, and then gets no shapes.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from onnxforge._errors import InvalidGraph
from onnxforge.ir.text import text_errors
from onnxforge.ir.wire import ASIDE_MIN_ELEMENTS

# Problems that are not type errors: the engine reports unknown ops itself, with NotImplemented.
_NOT_TYPE_ERRORS = ("No Op registered", "No opset import for domain", "is not a registered function/op")
# Bigger initializers reach inference as typed inputs: their values are never data-propagated, and the
# loader leaves their data out of the protobuf (onnxforge.ir.wire), so the bound must be the loader's.
_KEEP_INITIALIZER_ELEMENTS = ASIDE_MIN_ELEMENTS
_GRAPH_KINDS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def _subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read from enclosing scopes (onnx-ir knows this too, but on its own IR)."""
    reads: set[str] = set()
    for attr in node.attribute:
        for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
            for inner in graph.node:
                defined.update(inner.output)
            for inner in graph.node:
                reads.update(name for name in inner.input if name and name not in defined)
                reads.update(name for name in _subgraph_reads(inner) if name not in defined)
    return reads


def _reads(node: onnx.NodeProto) -> list[str]:
    """Every name a node reads: its inputs, and what its subgraphs (if any) read from enclosing scopes."""
    needs = [name for name in node.input if name]
    # ``len`` first: iterating a message's attributes wraps each one, which cost more than the rest here.
    if len(node.attribute) and any(attr.type in _GRAPH_KINDS for attr in node.attribute):
        needs.extend(_subgraph_reads(node))
    return needs


def _sorted_nodes(nodes: Iterable[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Kahn's order over the node list; nodes left in a cycle are appended as they are (inference reports them).

    Every protobuf field is read once per node (each read copies out of the message): ~10 us per node before."""
    pending = [(node, _reads(node), list(node.output)) for node in nodes]
    produced_by_graph = {name for _, _, outputs in pending for name in outputs}
    ordered: list[onnx.NodeProto] = []
    known = set(available)
    progress = True
    while pending and progress:
        progress = False
        rest = []
        for entry in pending:
            node, needs, outputs = entry
            if all(name in known or name not in produced_by_graph for name in needs):
                ordered.append(node)
                known.update(outputs)
                progress = True
            else:
                rest.append(entry)
        pending = rest
    return ordered + [node for node, _, _ in pending]


def _inference_view(proto: onnx.ModelProto, sort: bool) -> onnx.ModelProto:
    """What inference needs: opsets, functions, and the graph (sorted if asked) with large weights as typed inputs."""
    view = onnx.ModelProto(ir_version=proto.ir_version)
    view.opset_import.extend(proto.opset_import)
    view.functions.extend(proto.functions)
    source, graph = proto.graph, view.graph
    graph.name = source.name
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    graph.sparse_initializer.extend(source.sparse_initializer)
    input_names = {v.name for v in source.input}
    for tensor in source.initializer:
        count = 1
        for dim in tensor.dims:
            count *= dim
        if count <= _KEEP_INITIALIZER_ELEMENTS and tensor.data_location != onnx.TensorProto.EXTERNAL:
            graph.initializer.append(tensor)
        elif tensor.name not in input_names:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    if sort:
        available = input_names | {t.name for t in source.initializer}
        graph.node.extend(_sorted_nodes(source.node, available))
    else:
        graph.node.extend(source.node)
    return view


def _sorted_view(proto: onnx.ModelProto, unsorted: onnx.ModelProto) -> onnx.ModelProto | None:
    """``unsorted`` with its nodes sorted; None when they already were."""
    source = proto.graph
    available = {v.name for v in source.input} | {t.name for t in source.initializer}
    nodes = list(source.node)
    ordered = _sorted_nodes(nodes, available)
    if all(a is b for a, b in zip(ordered, nodes)):
        return None
    view = onnx.ModelProto()
    view.CopyFrom(unsorted)
    del view.graph.node[:]
    view.graph.node.extend(ordered)
    return view


def check_types(proto: onnx.ModelProto, where: str) -> onnx.ModelProto | None:
    """Raise InvalidGraph when onnx's type inference rejects the graph (as ORT does at load).

    Returns the inferred (view of the) model, with data propagation, when that inference succeeded."""
    with text_errors(proto, where):
        view = _inference_view(proto, sort=False)
    try:
        return onnx.shape_inference.infer_shapes(view, check_type=True, strict_mode=True, data_prop=True)
    except Exception:  # noqa: BLE001 - an unsorted graph, or decided by the check without data propagation
        pass
    with text_errors(proto, where):
        sorted_view = _sorted_view(proto, view)
    if sorted_view is not None:
        view = sorted_view
        try:
            return onnx.shape_inference.infer_shapes(view, check_type=True, strict_mode=True, data_prop=True)
        except Exception:  # noqa: BLE001 - decided by the check without data propagation, below
            pass
    try:
        onnx.shape_inference.infer_shapes(view, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        # onnx raises a bare ValueError for some malformed types (e.g. an input of elem_type 0).
        message = str(exc)
        if any(marker in message for marker in _NOT_TYPE_ERRORS):
            return None
        if message.count("Inference error(s)") > 1:
            # The error comes from inside an op's own function body (onnx infers some ops, e.g.
            # MeanVarianceNormalization, through their bodies and fails on the body's attribute
            # references): a limit of onnx's inference, not a type error in the user's graph.
            return None
        raise InvalidGraph(
            f"Load model from {where} failed: type or shape inference rejects the graph: {message}"
        ) from exc
    return None
