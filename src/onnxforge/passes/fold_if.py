"""If with a constant condition is replaced by the branch it always takes.

``If(c) then G1 else G2`` with ``c`` constant equals the nodes of ``G1`` (``c`` true) or ``G2`` inlined
into the enclosing graph, the ``If``'s outputs being that branch's outputs. Branch nodes read outer values
directly (onnx-ir keeps them as the same objects), so moving them keeps every edge; the branch's own
initializers move too. Moved values get fresh names, because two If nodes' branches may reuse names that
must stay unique once in one graph. An If output that is a graph output keeps its name, through an
``Identity`` when the branch output cannot take it (an outer value, an initializer, another output).
"""

from __future__ import annotations

import onnx_ir as ir

from onnxforge.passes._util import Names, alive, all_nodes, attr, const_array, install, is_onnx_op, replace_value


class FoldConstantIfPass(ir.passes.InPlacePass):
    """Inline the taken branch of every If whose condition is a constant."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        names = Names(model)
        folded = 0
        for node in all_nodes(model):
            if not alive(node) or not is_onnx_op(node, "If") or not node.inputs or node.inputs[0] is None:
                continue
            condition = const_array(node.inputs[0])
            if condition is None or condition.size != 1:
                continue
            branch = attr(node, "then_branch" if bool(condition.ravel()[0]) else "else_branch")
            if not isinstance(branch, ir.Graph) or len(branch.outputs) != len(node.outputs):
                continue
            self._inline(node, branch, names)
            folded += 1
        return ir.passes.PassResult(model, modified=folded > 0)

    @staticmethod
    def _inline(node: ir.Node, branch: ir.Graph, names: Names) -> None:
        graph = node.graph
        assert graph is not None
        results = list(branch.outputs)
        branch.outputs.clear()
        for value in list(branch.initializers.values()):
            branch.initializers.pop(value.name or "")
            value.name = names.fresh(value.name or "branch_const")
            graph.register_initializer(value)
        moved = list(branch)
        for inner in moved:
            branch.remove(inner)
            for out in inner.outputs:
                if out.name:
                    out.name = names.fresh(out.name)
        graph.insert_before(node, moved)
        for out, result in zip(node.outputs, results):
            if replace_value(out, result):
                continue
            # The output keeps its name through an Identity reading the branch's result.
            install(ir.node("Identity", [result]), before=node, replaces=out)
        graph.remove(node, safe=True)
