"""Session optimization levels as pass lists: ``optimize(model, level)`` for ``InferenceSession``.

Contract: takes an onnx-ir model and returns one that computes the same outputs for every input the
original accepts. Graph inputs (initializers listed as inputs included: they stay overridable, so they are
never folded), graph outputs (names, order, types) and opsets are kept. The passed-in model is only
sorted topologically (as the plan would do anyway); the passes work on a clone (tensors shared, never
written). If a pass raises, the run starts again from a fresh clone without it; if the result's interface
differs anyway, the model is returned as given. ``check_n > 0`` also runs both models on random inputs
and returns the original on a mismatch (off by default: session creation should not cost model runs).

With ``reload`` (a function that builds the model anew, as a session can from its protobuf), the passes
edit the passed-in model itself and no clone is made: cloning cost as much as all the passes on a model
they leave as it is. A fresh model comes from ``reload`` only when a pass fails or the result is refused.

Levels follow onnxruntime's ``GraphOptimizationLevel``:

- 0 ``ORT_DISABLE_ALL``: the model as given;
- 1 ``ORT_ENABLE_BASIC``: semantics-preserving passes (constant and shape folding, no-op removal, merging
  of consecutive ops, constant If, CSE, DCE, inlining);
- 2 ``ORT_ENABLE_EXTENDED``: plus the fusions (Conv/Gemm + BatchNormalization, Conv/BN + per-channel
  affine, MatMul + Add -> Gemm, Pad into Conv/Pool), which re-associate float arithmetic;
- 3 ``ORT_ENABLE_LAYOUT`` and 99 ``ORT_ENABLE_ALL``: the same as 2 for now (the engine's own layout and
  kernel fusions happen at plan time, not as graph rewrites).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import onnx
import onnx_ir as ir

from onnxforge.passes.infer_shapes import apply_inferred
from onnxforge.passes.pipeline import BASIC, EXTENDED, PASS_NAMES, Options, PassFailed, run_passes
from onnxforge.passes.verify import CannotVerify, Verifier

_log = logging.getLogger("onnxforge.passes")


def optimize(
    model: ir.Model,
    level: int,
    *,
    check_n: int = 0,
    fold_size_limit: int | None = None,
    reload: Callable[[], ir.Model] | None = None,
    inferred: onnx.GraphProto | None = None,
) -> ir.Model:
    """The model rewritten for an ORT optimization ``level`` (see the module docstring).

    ``inferred``: what onnx's shape inference (with data propagation) gave for ``model`` as it is, e.g. when
    the caller checked types with it; it is applied once, instead of inferring again."""
    if int(level) <= 0:
        return model
    pass_level = BASIC if int(level) == 1 else EXTENDED
    options = Options(fold_size_limit=fold_size_limit, initializers_as_constants=False)
    if reload is None:
        model.graph.sort()  # clone() needs producers before consumers; the plan sorts the graph anyway
        original = model
        fresh: Callable[[], ir.Model] = model.clone
    else:
        original, fresh = None, reload
    interface = _interface(model)
    disabled: list[str] = []
    candidate = model if reload is not None else fresh()
    shapes_inferred = False
    if inferred is not None and "infer_shapes" not in disabled:
        apply_inferred(candidate, inferred)
        shapes_inferred = True
    for _ in range(len(PASS_NAMES) + 1):
        try:
            run_passes(candidate, level=pass_level, disabled=disabled, options=options, shapes_inferred=shapes_inferred)
        except PassFailed as exc:
            _log.debug("optimize: %s; retrying without it", exc)
            disabled.append(exc.name)
            candidate, shapes_inferred = fresh(), False
            continue
        break
    else:
        return original if original is not None else fresh()
    if not _same_interface(interface, _interface(candidate)):
        _log.debug("optimize: the optimized graph's inputs or outputs differ; keeping the model as given")
        return original if original is not None else fresh()
    if check_n > 0:
        original = original if original is not None else fresh()
        if not _same_outputs(original, candidate, check_n):
            return original
    return candidate


Interface = tuple[list[str | None], list[str | None], list[ir.DataType | None]]


def _interface(model: ir.Model) -> Interface:
    """Input and output names in order, and the declared output types."""
    graph = model.graph
    return [v.name for v in graph.inputs], [v.name for v in graph.outputs], [v.dtype for v in graph.outputs]


def _same_interface(before: Interface, after: Interface) -> bool:
    """Same input and output names in the same order, and every declared output type kept."""
    if before[0] != after[0] or before[1] != after[1]:
        return False
    return all(b is None or b == a for b, a in zip(before[2], after[2]))


def _same_outputs(original: ir.Model, candidate: ir.Model, check_n: int) -> bool:
    try:
        verifier = Verifier(original, check_n)
    except CannotVerify:
        return True  # nothing to compare on: the passes' own rules are all there is, as in onnxruntime
    problem = verifier.check(candidate)
    if problem is not None:
        _log.debug("optimize: %s; keeping the model as given", problem)
    return problem is None
