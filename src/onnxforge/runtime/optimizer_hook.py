"""Where the session's graph optimizer plugs in.

The optimization passes live in ``onnxforge.passes``, a layer above the runtime, so the runtime cannot
import them. ``onnxforge.passes`` registers its level-to-passes function here when imported (the top-level
``onnxforge`` package imports it); without it, every level runs the graph as given.

The session hands over a model it owns, with ``reload`` to build the same model again: the optimizer may
then rewrite the model in place instead of working on a copy, and call ``reload`` if it has to start over.
It also hands over the shapes onnx inferred while checking types, for the optimizer's shape-aware rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import onnx
import onnx_ir as ir


class GraphOptimizer(Protocol):
    def __call__(
        self,
        model: ir.Model,
        level: int,
        *,
        reload: Callable[[], ir.Model] | None = None,
        inferred: onnx.GraphProto | None = None,
    ) -> ir.Model: ...


_optimizer: GraphOptimizer | None = None


def set_graph_optimizer(optimizer: GraphOptimizer | None) -> None:
    """Install the function that rewrites a model for an ORT optimization level (None removes it)."""
    global _optimizer
    _optimizer = optimizer


def optimize_for_level(
    model: ir.Model,
    level: int,
    reload: Callable[[], ir.Model] | None = None,
    inferred: onnx.GraphProto | None = None,
) -> ir.Model:
    """The model the session should plan for ``level``; unchanged at level 0 or with no optimizer.

    With ``reload``, ``model`` may be rewritten in place; ``inferred`` is onnx's shape inference (with data
    propagation) of ``model`` as it is, so the optimizer need not run it again (see the module docstring)."""
    if _optimizer is None or int(level) <= 0:
        return model
    return _optimizer(model, int(level), reload=reload, inferred=inferred)
