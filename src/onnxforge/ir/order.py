"""Whether a graph is already in topological order, a cheap test before onnx-ir's sort.

onnx-ir's ``Graph.sort`` takes every node out and inserts it again (~5 us a node) even when the order does
not change; the optimizer and the plan builder both want sorted graphs, and most graphs already are. The
sort is stable, so on a sorted graph it keeps the order it was given: skipping it changes nothing.
"""

from __future__ import annotations

import onnx_ir as ir


def is_sorted(graph: ir.Graph) -> bool:
    """True when every node of ``graph`` (subgraphs included) comes after the producers of the values it
    or any of its subgraphs reads."""
    return _sorted_from(graph, set())


def _sorted_from(graph: ir.Graph, done: set[ir.Node]) -> bool:
    for node in graph:
        for value in node.inputs:
            if value is None:
                continue
            producer = value.producer()
            if producer is not None and producer not in done:
                return False
        if node.attributes:
            # A subgraph may read values of any enclosing graph: those must be produced before this node.
            for attr in node.attributes.data.values():
                if attr.type == ir.AttributeType.GRAPH:
                    subgraphs = [attr.value]
                elif attr.type == ir.AttributeType.GRAPHS:
                    subgraphs = list(attr.value)
                else:
                    continue
                if any(not _sorted_from(sub, done) for sub in subgraphs):
                    return False
        done.add(node)
    return True
