"""Session optimization levels as pass lists: ``optimize(model, level)`` for ``InferenceSession``.

Contract: takes an onnx-ir model and returns one that computes the same outputs for every input the
original accepts. Graph inputs (initializers listed as inputs included: they stay overridable, so they are
never folded), graph outputs (names, order, types) and opsets are kept. The passed-in model is only
sorted topologically (as the plan would do anyway); the passes work on a clone (tensors shared, never
written). If a pass raises, the run starts
again from a fresh clone without it; if the result's interface differs anyway, the model is returned as
given. ``check_n > 0`` also runs both models on random inputs and returns the original on a mismatch
(off by default: session creation should not cost model runs).

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

import onnx_ir as ir

from onnxforge.passes.pipeline import BASIC, EXTENDED, PASS_NAMES, Options, PassFailed, run_passes
from onnxforge.passes.verify import CannotVerify, Verifier

_log = logging.getLogger("onnxforge.passes")


def _same_interface(before: ir.Model, after: ir.Model) -> bool:
    """Same input and output names in the same order, and every declared output type kept."""
    if [v.name for v in before.graph.inputs] != [v.name for v in after.graph.inputs]:
        return False
    if [v.name for v in before.graph.outputs] != [v.name for v in after.graph.outputs]:
        return False
    return all(b.dtype is None or b.dtype == a.dtype for b, a in zip(before.graph.outputs, after.graph.outputs))


def optimize(model: ir.Model, level: int, *, check_n: int = 0, fold_size_limit: int | None = None) -> ir.Model:
    """The model rewritten for an ORT optimization ``level`` (see the module docstring)."""
    if int(level) <= 0:
        return model
    pass_level = BASIC if int(level) == 1 else EXTENDED
    options = Options(fold_size_limit=fold_size_limit, initializers_as_constants=False)
    disabled: list[str] = []
    model.graph.sort()  # clone() needs producers before consumers; the plan sorts the graph anyway
    for _ in range(len(PASS_NAMES) + 1):
        candidate = model.clone()
        try:
            run_passes(candidate, level=pass_level, disabled=disabled, options=options)
        except PassFailed as exc:
            _log.debug("optimize: %s; retrying without it", exc)
            disabled.append(exc.name)
            continue
        break
    else:
        return model
    if not _same_interface(model, candidate):
        _log.debug("optimize: the optimized graph's inputs or outputs differ; keeping the model as given")
        return model
    if check_n > 0 and not _same_outputs(model, candidate, check_n):
        return model
    return candidate


def _same_outputs(original: ir.Model, candidate: ir.Model, check_n: int) -> bool:
    try:
        verifier = Verifier(original, check_n)
    except CannotVerify:
        return True  # nothing to compare on: the passes' own rules are all there is, as in onnxruntime
    problem = verifier.check(candidate)
    if problem is not None:
        _log.debug("optimize: %s; keeping the model as given", problem)
    return problem is None
