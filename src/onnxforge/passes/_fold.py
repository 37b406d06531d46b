"""Folding a node's readers into it, editing the node in place: what the fusions share.

A fusion folds ``absorbs`` (a node reading ``node``'s output, or a chain of them, each the only reader of
the one before) into ``node``. The graph it must give is the one ``_util.rebuild`` gives, one absorbed node
at a time: a copy of ``node`` reading the new inputs, standing where the (last) absorbed node stood, its
output taking over that node's first output (name, type, shape), with ``meta[ABSORBED]`` listing the
absorbed nodes' names; then the absorbed nodes and ``node`` removed. Editing ``node`` itself gives that
graph for half the cost of copying it (attributes, a node, an output value, two removals), and folding a
chain at once spares the intermediate nodes and initializers.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from onnxforge.passes._util import ABSORBED, rebuild, remove_if_dead, replace_value


def fold_into(node: ir.Node, inputs: Sequence[ir.Value | None], *, absorbs: Sequence[ir.Node]) -> bool:
    """``node``, reading ``inputs``, takes the place and first output of the chain ``absorbs`` (see the
    module docstring), edited in place; the absorbed nodes are removed.

    The edit clears what the copy would not carry over (doc strings, metadata). A single absorbed node that
    ``editable`` refuses is folded with a rebuilt copy instead (a chain must be editable). False, with the
    graph unchanged, when the output's name cannot move (see ``replace_value``).
    """
    last = absorbs[-1]
    replaces, graph = last.outputs[0], last.graph
    if not editable(node, absorbs):
        assert len(absorbs) == 1, "a chain is folded only where it can be edited"
        if not rebuild(node, inputs, before=last, replaces=replaces, absorbs=absorbs):
            return False
        remove_if_dead(last)
        remove_if_dead(node)
        return True
    assert graph is not None
    absorbed = list(node.meta.get(ABSORBED, []))
    for other in absorbs:
        absorbed += [other.name or other.op_type, *other.meta.get(ABSORBED, [])]
    node.meta[ABSORBED] = absorbed
    node.doc_string = None
    if node.metadata_props:
        node.metadata_props.clear()
    if len(node.inputs) != len(inputs):
        node.resize_inputs(len(inputs))
    for index, value in enumerate(inputs):
        if node.inputs[index] is not value:
            node.replace_input_with(index, value)
    out = node.outputs[0]
    out.type, out.shape, out.doc_string = replaces.type, replaces.shape, None
    if out.metadata_props:
        out.metadata_props.clear()
    out.meta.clear()
    # As ``_util.install`` names the copy's output (a graph output keeps its name there too).
    name = replaces.name
    replaces.name = f"{name}__replaced"
    out.name = name
    replaced = replace_value(replaces, out)
    assert replaced, "checked by editable"
    out.name = name
    graph.insert_before(last, node)  # moves it: the copy would stand where the last absorbed node stood
    graph.remove(absorbs, safe=True)
    return True


def editable(node: ir.Node, absorbs: Sequence[ir.Node]) -> bool:
    """Whether ``fold_into`` can edit ``node`` in place for ``absorbs`` and get the graph rebuilt copies give:
    ``node`` with one output (the copy has one), each output in the chain read by the next node alone and
    not a graph output, the last node's other outputs unused, all in one graph, the last output named."""
    if len(node.outputs) != 1 or node.version is not None or node.overload:
        return False
    graph, value = node.graph, node.outputs[0]
    for reader in absorbs:
        if reader.graph is None or reader.graph is not graph:
            return False
        if value.is_graph_output() or any(use.node is not reader for use in value.uses()):
            return False
        value = reader.outputs[0]
    last = absorbs[-1]
    if not value.name:
        return False
    return not any(extra.uses() or extra.is_graph_output() for extra in last.outputs[1:])


class SnapshotOrder:
    """Positions of a pass's node snapshot (``all_nodes``), built on the first question: a chain may only
    take in a node the pass would have visited after the one before, as folding one node a visit would."""

    def __init__(self, nodes: list[ir.Node]) -> None:
        self._nodes = nodes
        self._index: dict[ir.Node, int] | None = None

    def after(self, first: ir.Node, second: ir.Node) -> bool:
        if self._index is None:
            self._index = {node: index for index, node in enumerate(self._nodes)}
        first_index, second_index = self._index.get(first), self._index.get(second)
        return first_index is not None and second_index is not None and second_index > first_index
