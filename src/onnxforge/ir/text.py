"""Text fields that are not UTF-8: protobuf (upb) hands them to Python as ``bytes`` instead of ``str``.

A damaged or hostile file can hold such bytes in any name (op types, value names, the graph's name), and the
code that reads them (onnx's schema lookup, its helpers, onnx-ir) then fails with a ``TypeError`` or a
``UnicodeDecodeError`` that says nothing about the file. Checking every name of every model costs ~3-6 ms a
session on a 1,000-node graph, so the check runs only when such an error escapes: :func:`text_errors`
turns it into ``InvalidProtobuf`` naming the field, and lets any other error through unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import onnx

from onnxforge._errors import InvalidProtobuf


def non_utf8_field(proto: onnx.ModelProto) -> str | None:
    """Where the first name that protobuf could not decode as UTF-8 is, or None."""
    header = [
        ("producer_name", proto.producer_name),
        ("producer_version", proto.producer_version),
        ("domain", proto.domain),
        ("doc_string", proto.doc_string),
        ("graph doc_string", proto.graph.doc_string),
    ]
    header += [("opset_import domain", opset.domain) for opset in proto.opset_import]
    header += [("metadata_props", text) for prop in proto.metadata_props for text in (prop.key, prop.value)]
    for label, text in header:
        if type(text) is not str:
            return f"model {label} {text!r}"
    for function in proto.functions:
        for label, text in (("function name", function.name), ("function domain", function.domain)):
            if type(text) is not str:
                return f"{label} {text!r}"
        found = _in_nodes(function.node, f"function '{function.name}'")
        if found:
            return found
    return _in_graph(proto.graph, "graph")


def _in_graph(graph: onnx.GraphProto, where: str) -> str | None:
    if type(graph.name) is not str:
        return f"{where} name {graph.name!r}"
    for label, items in (
        ("input", graph.input),
        ("output", graph.output),
        ("value_info", graph.value_info),
        ("initializer", graph.initializer),
    ):
        for item in items:
            if type(item.name) is not str:
                return f"{where} {label} name {item.name!r}"
    return _in_nodes(graph.node, where)


def _in_nodes(nodes: Iterable[onnx.NodeProto], where: str) -> str | None:
    for index, node in enumerate(nodes):
        fields = (("op_type", node.op_type), ("domain", node.domain), ("name", node.name))
        texts = (*fields, *(("input", t) for t in node.input), *(("output", t) for t in node.output))
        for label, text in texts:
            if type(text) is not str:
                return f"{where} node {index} {label} {text!r}"
        for attr in node.attribute:
            if type(attr.name) is not str:
                return f"{where} node {index} attribute name {attr.name!r}"
            subgraphs = [attr.g] if attr.HasField("g") else []
            for sub in [*subgraphs, *attr.graphs]:
                found = _in_graph(sub, f"{where} node {index} subgraph")
                if found:
                    return found
    return None


@contextlib.contextmanager
def text_errors(proto: onnx.ModelProto, where: str) -> Iterator[None]:
    """Inside the block, a ``TypeError`` or ``UnicodeError`` caused by a non-UTF-8 name of ``proto`` becomes
    ``InvalidProtobuf`` naming it; other errors pass unchanged."""
    try:
        yield
    except (TypeError, UnicodeError) as exc:
        found = non_utf8_field(proto)
        if found is None:
            raise
        raise InvalidProtobuf(f"Load model from {where} failed: a name is not valid UTF-8: {found}") from exc
