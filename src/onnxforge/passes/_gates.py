"""Cheap tests that tell the pipeline a pass has nothing to do, so it is not run at all.

Each test is a necessary condition for the pass to change anything; when it fails, running the pass would
have walked the whole model to come back unmodified. On the models sessions usually see, most passes find
nothing (every fusion needs its ops, CSE needs two nodes with the same inputs, a sorted graph stays as it
is), and walking the model twenty times was most of the cost of creating a session.

- :func:`op_types`: the op types a model holds, for passes that only act on certain ops;
- :func:`may_share_subexpressions`: CSE merges a node into an earlier one with the same op, output count
  and input values (the same objects); with no such pair in any graph there is no first merge to make;
- :func:`is_sorted`: every node comes after the producers of what it (or any subgraph of it) reads.
  onnx-ir's sort is stable, so on a sorted graph it keeps the order it was given.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxforge.ir import order

_SUBGRAPH_KINDS = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
_GRAPH, _GRAPHS = _SUBGRAPH_KINDS


def nodes_of(graph: ir.Graph, into: list[ir.Node] | None = None, graphs: list[ir.Graph] | None = None) -> list[ir.Node]:
    """Every node of ``graph`` and its subgraphs, each node before its subgraphs' nodes (as onnx-ir's
    ``RecursiveGraphIterator`` orders them), without a generator per node; ``graphs`` collects the
    subgraphs met, in the same order.

    Half the cost of the obvious loop: the attributes' dict is tested directly (``Attributes`` is a
    UserDict, whose ``len`` is a Python call) and a node's subgraphs are walked without listing them."""
    nodes = [] if into is None else into
    append = nodes.append
    for node in graph:
        append(node)
        data = node.attributes.data
        if not data:
            continue
        for attribute in data.values():
            kind = attribute.type
            if kind == _GRAPH:
                subs = [attribute.value]
            elif kind == _GRAPHS:
                subs = list(attribute.value)
            else:
                continue
            for sub in subs:
                if graphs is not None:
                    graphs.append(sub)
                nodes_of(sub, nodes, graphs)
    return nodes


def op_types(model: ir.Model) -> frozenset[str]:
    return frozenset(node.op_type for node in nodes_of(model.graph))


def may_share_subexpressions(model: ir.Model) -> bool:
    """False when no graph has two nodes with the same op, output count and input values."""
    return _duplicate_keys(model.graph)


def _duplicate_keys(graph: ir.Graph) -> bool:
    seen: set[tuple[object, ...]] = set()
    for node in graph:
        key = (node.domain, node.op_type, node.overload, len(node.outputs), tuple(map(id, node.inputs)))
        if key in seen:
            return True
        seen.add(key)
        data = node.attributes.data  # as in nodes_of: no UserDict ``len``, no list of subgraphs per node
        if not data:
            continue
        for attribute in data.values():
            kind = attribute.type
            if kind == _GRAPH and _duplicate_keys(attribute.value):
                return True
            if kind == _GRAPHS and any(_duplicate_keys(sub) for sub in attribute.value):
                return True
    return False


def is_sorted(model: ir.Model) -> bool:
    """True when every graph's nodes already come after the producers of the values they read."""
    return order.is_sorted(model.graph)


def shapes_complete(model: ir.Model) -> bool:
    """Every node output (subgraphs included) and graph input is a tensor of known element type and fully
    static shape: onnx's inference could add nothing, so after a change it need not run again (passes never
    make a known shape wrong, and a new value without a shape fails this test)."""
    values = [value for node in nodes_of(model.graph) for value in node.outputs]
    values.extend(model.graph.inputs)
    for value in values:
        if not isinstance(value.type, ir.TensorType) or value.dtype in (None, ir.DataType.UNDEFINED):
            return False
        shape = value.shape
        if shape is None or not all(type(dim) is int for dim in shape):
            return False
    return True
