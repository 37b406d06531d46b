"""``simplify``: run the passes to a fixed point, verify the result, and never hand back a wrong model.

1. The model is loaded afresh for every attempt (a path through ``ir.load``, external data mapped; a
   ``ModelProto`` through a copy), so the caller's proto and file are never touched.
2. ``overwrite_input_shapes`` pins input dims, then the pipeline (``pipeline.PASSES`` minus ``skip``)
   runs; a pass that raises is disabled and the attempt restarts from a fresh model.
3. The result is run against the original with the onnxforge engine (``verify``). On a mismatch the
   passes that changed the graph are bisected: runs with only a prefix of them enabled find the first
   prefix that breaks the outputs, its last pass is dropped and reported, and the whole thing repeats
   until the result verifies. If no pass can be blamed, the original model is returned.
4. When the original cannot run on the check inputs (an op the engine lacks, inputs without shapes),
   nothing can be verified and the original is returned too (fail closed), unless ``check_n=0`` and no
   ``inputs`` were given, which the caller uses to skip verification on purpose.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir

from onnxforge._errors import InvalidArgument
from onnxforge.ir.map_types import refuse_map_types
from onnxforge.passes.overwrite_input_shapes import Dim, OverwriteInputShapesPass
from onnxforge.passes.pipeline import EXTENDED, PASS_NAMES, ExtraPass, Options, PassFailed, RunResult, run_passes
from onnxforge.passes.report import ModelStats, SimplifyReport, model_size
from onnxforge.passes.verify import CannotVerify, Verifier, has_external_tensors, tensor_bytes

ModelInput = onnx.ModelProto | str | os.PathLike
InputShapes = Mapping[str | None, Sequence[Dim]]


def _loader(model: ModelInput) -> tuple[Callable[[], ir.Model], int]:
    """A function giving a fresh onnx-ir copy of the model each call, and the model's size on disk."""
    if isinstance(model, onnx.ModelProto):
        refuse_map_types(model, "simplify", "simplify")
        frozen = model.SerializeToString() if model.ByteSize() < 2**31 - 1 else None

        def from_proto() -> ir.Model:
            copy = onnx.ModelProto()
            if frozen is not None:
                copy.ParseFromString(frozen)
            else:
                copy.CopyFrom(model)
            return ir.serde.deserialize_model(copy)

        return from_proto, model.ByteSize()
    path = Path(os.fspath(model))
    size = path.stat().st_size
    proto = onnx.load(str(path), load_external_data=False)
    refuse_map_types(proto, str(path), "simplify")
    size += sum(loc.stat().st_size for loc in _external_locations(path, proto) if loc.is_file())
    return (lambda: ir.load(str(path))), size


class _Simplifier:
    def __init__(
        self,
        model: ModelInput,
        shapes: InputShapes | None,
        options: Options,
        level: int,
        extra: Sequence[ExtraPass],
    ) -> None:
        self.source = model
        self.load, self.size = _loader(model)
        self.shapes = dict(shapes or {})
        self.options = options
        self.level = level
        self.extra = list(extra)
        self.failed: dict[str, str] = {}

    def fresh(self) -> ir.Model:
        model = self.load()
        if self.shapes:
            OverwriteInputShapesPass(self.shapes)(model)
        return model

    def attempt(self, disabled: set[str]) -> tuple[ir.Model, RunResult]:
        """The model after the enabled passes; a pass that raises joins ``failed`` and is skipped."""
        while True:
            model = self.fresh()
            try:
                return model, run_passes(
                    model,
                    level=self.level,
                    disabled=sorted(disabled | set(self.failed)),
                    options=self.options,
                    extra=self.extra,
                )
            except PassFailed as exc:
                self.failed[exc.name] = str(exc.error) or type(exc.error).__name__


def simplify_ir(
    model: ModelInput,
    *,
    check_n: int = 3,
    overwrite_input_shapes: InputShapes | None = None,
    skip: Sequence[str] = (),
    fold_size_limit: int | None = None,
    initializers_as_constants: bool = True,
    inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    level: int = EXTENDED,
    extra_passes: Sequence[ExtraPass] = (),
    seed: int = 0,
) -> tuple[ir.Model, SimplifyReport]:
    """Like :func:`simplify` but returns the onnx-ir model (which may exceed protobuf's 2 GB limit)."""
    unknown = sorted(set(skip) - set(PASS_NAMES) - {name for name, _ in extra_passes})
    if unknown:
        raise InvalidArgument(f"skip: unknown pass(es) {unknown}; passes are {', '.join(PASS_NAMES)}")
    options = Options(fold_size_limit=fold_size_limit, initializers_as_constants=initializers_as_constants)
    job = _Simplifier(model, overwrite_input_shapes, options, level, extra_passes)
    original = job.fresh()
    report = SimplifyReport(before=ModelStats.of(original, job.size), after=ModelStats.of(original, job.size))
    given = [inputs] if isinstance(inputs, Mapping) else list(inputs or [])
    disabled = set(skip)
    verifier: Verifier | None = None
    if check_n > 0 or given:
        try:
            verifier = Verifier(original, check_n, given, seed)
        except CannotVerify as exc:
            report.verification = f"{exc}; the model is returned unchanged"
            return original, report
        report.verification = verifier.description
    else:
        report.verification = "check_n=0: verification skipped on request"

    try:
        return _simplify_verified(job, verifier, original, report, disabled)
    finally:
        if verifier is not None:
            verifier.close()


def _simplify_verified(
    job: _Simplifier, verifier: Verifier | None, original: ir.Model, report: SimplifyReport, disabled: set[str]
) -> tuple[ir.Model, SimplifyReport]:
    result, run = job.attempt(disabled)
    while verifier is not None:
        problem = verifier.check(result)
        if problem is None:
            report.verified = True
            break
        culprit, why = _bisect(job, verifier, disabled, list(run.touched), problem)
        if culprit is None:
            report.verification += f"; the simplified model differs ({why}) and no pass could be blamed, so the model is returned unchanged"
            report.changed_passes = []
            report.failed_passes = dict(job.failed)
            report.after = ModelStats.of(original)
            return job.fresh(), report
        report.dropped_passes[culprit] = why
        disabled.add(culprit)
        result, run = job.attempt(disabled)
    report.changed_passes = list(run.changed)
    report.failed_passes = dict(job.failed)
    report.rounds = run.rounds
    report.after = ModelStats.of(result, model_size(result))
    return result, report


def _bisect(
    job: _Simplifier, verifier: Verifier, disabled: set[str], candidates: list[str], problem: str
) -> tuple[str | None, str]:
    """The pass whose enabling first breaks the outputs, and the mismatch it causes (None if none does)."""
    if not candidates:
        return None, problem

    def breaks(count: int) -> str | None:
        model, _ = job.attempt(disabled | set(candidates[count:]))
        return verifier.check(model)

    if breaks(0) is not None:  # the failure does not come from the passes that changed the graph
        return None, problem
    good, bad, why = 0, len(candidates), problem
    while bad - good > 1:
        middle = (good + bad) // 2
        found = breaks(middle)
        if found is None:
            good = middle
        else:
            bad, why = middle, found
    return candidates[bad - 1], why


def simplify(
    model: ModelInput,
    *,
    check_n: int = 3,
    overwrite_input_shapes: InputShapes | None = None,
    skip: Sequence[str] = (),
    fold_size_limit: int | None = None,
    initializers_as_constants: bool = True,
    inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    level: int = EXTENDED,
    extra_passes: Sequence[ExtraPass] = (),
    seed: int = 0,
) -> tuple[onnx.ModelProto, SimplifyReport]:
    """Simplify an ONNX model (a ``ModelProto`` or a path) and check the result against the original.

    Args:
        check_n: random input sets to compare the models on (0 with no ``inputs``: no check).
        overwrite_input_shapes: ``{input: dims}`` pinning input shapes (``None`` key: the only input).
        skip: pass names (``pipeline.PASS_NAMES``) not to run.
        fold_size_limit: largest tensor, in bytes, constant folding may create (None: no limit).
        initializers_as_constants: treat initializers listed as graph inputs (IR < 4) as constants.
        inputs: input sets (one dict, or a list) to check on besides the random ones.
        level: 1 for the semantics-preserving passes only, 2 to add the fusions.
        extra_passes: ``(name, pass)`` pairs run in the fixed-point loop after the built-in passes.

    Returns:
        The simplified model (the original if it could not be verified) and a :class:`SimplifyReport`.
        Save models above 2 GB with external data (``simplify_file`` does).
    """
    result, report = simplify_ir(
        model,
        check_n=check_n,
        overwrite_input_shapes=overwrite_input_shapes,
        skip=skip,
        fold_size_limit=fold_size_limit,
        initializers_as_constants=initializers_as_constants,
        inputs=inputs,
        level=level,
        extra_passes=extra_passes,
        seed=seed,
    )
    return ir.serde.serialize_model(result), report


def save_model(model: ir.Model, path: str | os.PathLike, *, external_data_threshold: int = 1_800_000_000) -> None:
    """Save ``model``; with its tensors in ``<name>.data`` beside it when they would not fit in a protobuf, or
    when they come from another model's external data (which the saved file must not depend on)."""
    target = Path(os.fspath(path))
    if tensor_bytes(model) > external_data_threshold or has_external_tensors(model):
        ir.save(model, target, external_data=f"{target.name}.data")
    else:
        ir.save(model, target)


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _tensors(sub)


def _external_locations(path: Path, proto: onnx.ModelProto | None = None) -> set[Path]:
    """The files the model at ``path`` keeps tensors in."""
    proto = proto if proto is not None else onnx.load(str(path), load_external_data=False)
    return {
        (path.parent / entry.value).resolve()
        for tensor in _tensors(proto.graph)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }


def simplify_file(source: str | os.PathLike, target: str | os.PathLike, **options: Any) -> SimplifyReport:
    """Simplify the model file ``source`` into ``target`` (options as for :func:`simplify`).

    ``source`` and the files it references are never written: a ``target`` that is ``source`` itself or
    would overwrite its external data is refused. Tensors go to ``<target>.data`` when they exceed 2 GB.
    """
    src, dst = Path(os.fspath(source)).resolve(), Path(os.fspath(target)).resolve()
    if src == dst:
        raise InvalidArgument(f"refusing to overwrite the input model {src}; choose another output path")
    protected = _external_locations(src) if src.is_file() else set()
    if dst in protected or dst.parent / f"{dst.name}.data" in protected:
        raise InvalidArgument(f"writing {dst} would overwrite external data the input model {src} reads")
    model, report = simplify_ir(src, **options)
    save_model(model, dst)
    data = dst.parent / f"{dst.name}.data"
    report.after.size = dst.stat().st_size + (data.stat().st_size if data.is_file() else 0)
    return report
