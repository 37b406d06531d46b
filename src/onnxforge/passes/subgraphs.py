"""Run a graph-level pass inside every subgraph too (If branches, Loop and Scan bodies, at any depth).

Most passes here walk subgraphs themselves, as do onnx-ir's DCE and identity elimination, but onnx-ir's
``CommonSubexpressionEliminationPass`` and ``TopologicalSortPass``-style passes only look at
``model.graph``. This wrapper applies such a pass to each subgraph by presenting it as the graph of a
throw-away ``ir.Model`` (same IR version and opsets): the subgraph's nodes and values are the same objects,
so the edits land in place and outer-scope values stay shared.

``skip_graphs_with`` leaves out every graph holding one of the given op types. The pipeline uses it to keep
CSE away from random ops it does not know: onnx-ir's CSE skips RandomNormal/RandomUniform(Like) and
Multinomial but would merge two ``Bernoulli(p)`` (or two training-mode ``Dropout``) into one draw.
"""

from __future__ import annotations

import onnx_ir as ir


class InEverySubgraphPass(ir.passes.InPlacePass):
    """Apply an in-place pass to the main graph and then to each of its subgraphs."""

    def __init__(self, inner: ir.passes.PassBase, skip_graphs_with: frozenset[str] = frozenset()) -> None:
        super().__init__()
        if not inner.in_place:
            raise ValueError("InEverySubgraphPass needs an in-place pass")
        self.inner = inner
        self.skip_graphs_with = skip_graphs_with

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for graph in [model.graph, *model.graph.subgraphs()]:
            if any(node.op_type in self.skip_graphs_with for node in graph):
                continue
            shell = model if graph is model.graph else ir.Model(graph, ir_version=model.ir_version)
            modified = self.inner(shell).modified or modified
        return ir.passes.PassResult(model, modified=modified)

    def __repr__(self) -> str:
        return f"InEverySubgraphPass({self.inner!r})"
