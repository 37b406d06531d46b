"""Dead code elimination: onnx-ir's ``RemoveUnusedNodesPass``, without its per-node schema lookups.

Rule (onnx-ir's, kept exactly): walking each graph (and subgraph, and function) from its end, a node none
of whose outputs is read or is a graph output is removed; every other node loses its trailing missing
inputs and, per its ONNX schema, its unread optional outputs (a ``BatchNormalization`` also drops a
``training_mode=0``). Then initializers no node reads, and that are neither graph inputs nor outputs, are
removed. Only removals count as a change, as in onnx-ir.

onnx-ir asks ``onnx.defs.get_schema`` for every live node on every run, which was most of the pass's
time: the pipeline runs it after every round. Here the schema step runs only where it can do something (a
node with an unread or unnamed output, or a ``BatchNormalization``), through onnx-ir's own function.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import unused_removal

_SUBGRAPH_KINDS = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)


def _needs_schema_step(node: ir.Node, graph_outputs: frozenset[ir.Value]) -> bool:
    """Whether onnx-ir's optional-output step could change ``node``: it only renames outputs that are
    unread (and not graph outputs), trims trailing unnamed ones, and edits BatchNormalization."""
    if node.op_type == "BatchNormalization":
        return True
    return any(not out.name or (not out.uses() and out not in graph_outputs) for out in node.outputs)


def _remove_in(graph: ir.Graph | ir.Function, opset: int | None, *, is_subgraph: bool = False) -> int:
    graph_outputs = frozenset(graph.outputs)
    if not is_subgraph:
        opset = graph.opset_imports.get("", opset)
    count = 0
    for node in reversed(graph):
        outputs = node.outputs
        if not any(out.uses() or out in graph_outputs for out in outputs):
            graph.remove(node, safe=True)
            count += 1
            continue
        inputs = node.inputs
        if inputs and inputs[-1] is None:
            unused_removal._remove_trailing_empty_inputs(node)
        if opset is not None and _needs_schema_step(node, graph_outputs):
            unused_removal._remove_unused_optional_outputs(node, graph_outputs, opset)
        if node.attributes:
            for attr in node.attributes.data.values():
                if attr.type == ir.AttributeType.GRAPH:
                    count += _remove_in(attr.as_graph(), opset, is_subgraph=True)
                elif attr.type == ir.AttributeType.GRAPHS:
                    for sub in attr.as_graphs():
                        count += _remove_in(sub, opset, is_subgraph=True)
    return count


class RemoveDeadCodePass(ir.passes.InPlacePass):
    """Remove unread nodes and initializers (see the module docstring)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        count = _remove_in(model.graph, None)
        graph = model.graph
        graph_outputs, graph_inputs = frozenset(graph.outputs), frozenset(graph.inputs)
        initializers = graph.initializers
        for init in list(initializers.values()):
            if not (init.uses() or init in graph_outputs or init in graph_inputs):
                assert init.name is not None
                del initializers[init.name]
                count += 1
        for function in model.functions.values():
            count += _remove_in(function, None)
        return ir.passes.PassResult(model, modified=bool(count))
