"""Where the session's graph optimizer plugs in.

The optimization passes live in ``onnxforge.passes``, a layer above the runtime, so the runtime cannot
import them. ``onnxforge.passes`` registers its level-to-passes function here when imported (the top-level
``onnxforge`` package imports it); without it, every level runs the graph as given.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

GraphOptimizer = Callable[[ir.Model, int], ir.Model]

_optimizer: GraphOptimizer | None = None


def set_graph_optimizer(optimizer: GraphOptimizer | None) -> None:
    """Install the function that rewrites a model for an ORT optimization level (None removes it)."""
    global _optimizer
    _optimizer = optimizer


def optimize_for_level(model: ir.Model, level: int) -> ir.Model:
    """The model the session should plan for ``level``; unchanged at level 0 or with no optimizer."""
    if _optimizer is None or int(level) <= 0:
        return model
    return _optimizer(model, int(level))
