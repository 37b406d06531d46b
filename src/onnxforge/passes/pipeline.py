"""The named pass list and the fixed-point driver that ``simplify`` and ``presets.optimize`` share.

Passes run in three stages: ``pre`` once (sorting, inlining, initializers as constants), ``loop`` until
no pass changes the graph (each one enables others: folding feeds shape folding feeds no-op removal feeds
fusion), and ``post`` once (dedup, DCE, final sort). Every pass has a name, used by ``skip=``, by the
report, and by the verifier's bisection. Level 1 passes preserve the graph's computation exactly up to
constant evaluation; level 2 passes are fusions that re-associate float arithmetic.

A pass that raises aborts the run with :class:`PassFailed`; since passes edit in place, the caller starts
again from a fresh copy of the model with that pass disabled.

Passes are skipped where they provably have nothing to do, which keeps creating a session cheap: a pass
that came back unmodified is not run again until some pass changes the model (an analysis pass, whose
result is a fixed point of itself, not until another pass changes it); a pass whose ops (``needs``: each
set must meet the model's op types) are absent does not run; CSE and sorting run only when ``_gates``
finds a candidate pair or an unsorted graph.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import onnx_ir as ir
from onnx_ir.passes.common import (
    CommonSubexpressionEliminationPass,
    DeduplicateInitializersPass,
    InlinePass,
    RemoveUnusedFunctionsPass,
    TopologicalSortPass,
)

from onnxforge.passes import _gates
from onnxforge.passes.constant_folding import FoldConstantsPass
from onnxforge.passes.dead_code import RemoveDeadCodePass
from onnxforge.passes.fold_if import FoldConstantIfPass
from onnxforge.passes.fuse_bn_affine import FuseBatchNormAffinePass
from onnxforge.passes.fuse_conv_affine import FuseConvAffinePass
from onnxforge.passes.fuse_conv_bn import FuseConvBatchNormPass
from onnxforge.passes.fuse_gemm_bn import FuseGemmBatchNormPass
from onnxforge.passes.fuse_pad import FusePadIntoConvPoolPass
from onnxforge.passes.infer_shapes import InferShapesPass
from onnxforge.passes.initializers_as_constants import InitializersAsConstantsPass
from onnxforge.passes.matmul_add_to_gemm import MatMulAddToGemmPass
from onnxforge.passes.merge_consecutive import MergeConsecutivePass
from onnxforge.passes.noop_removal import RemoveNoOpsPass
from onnxforge.passes.shape_folding import FoldShapesPass
from onnxforge.passes.subgraphs import InEverySubgraphPass

BASIC, EXTENDED = 1, 2
RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"}
)
MAX_ROUNDS = 10
_ARITHMETIC = frozenset({"Add", "Sub", "Mul", "Div"})
_NOOP_OPS = _ARITHMETIC | frozenset(
    {"Identity", "Concat", "Split", "Dropout", "Cast", "CastLike", "Transpose", "Reshape", "Pad", "Slice", "Expand"}
    | {"Squeeze", "Unsqueeze", "Tile"}
)


@dataclass(frozen=True)
class Options:
    """What the pass factories need to know."""

    fold_size_limit: int | None = None
    initializers_as_constants: bool = False


@dataclass(frozen=True)
class PassSpec:
    name: str
    stage: str  # "pre", "loop" or "post"
    level: int
    make: Callable[[Options], ir.passes.PassBase]
    analysis: bool = False  # only annotates (shapes): never counts as a change of the graph
    when: Callable[[Options], bool] = lambda options: True
    # The pass can only change a model whose op types meet each of these sets (see _gates).
    needs: tuple[frozenset[str], ...] = ()
    # A cheaper necessary condition for the pass to change anything (see _gates).
    worth_running: Callable[[ir.Model], bool] = lambda model: True
    # Its changes leave every value's inferred type and shape valid and give new values theirs (fusions
    # through ``install``, which copies them; node removal), so shape inference need not run again for them.
    # After any other change it runs again unless every value's shape is already static (_gates), or the pass
    # reports ``kept_shapes = True`` after its run (constant folding, when no fold can teach inference more).
    keeps_shapes: bool = False
    # Its changes make nothing unread that was read (dedup drops the duplicates it redirects itself), so a
    # dead-code pass that had found nothing to do still finds nothing after them.
    leaves_no_dead_code: bool = False


def _ops(*names: str) -> frozenset[str]:
    return frozenset(names)


PASSES: tuple[PassSpec, ...] = (
    PassSpec(
        "topological_sort",
        "pre",
        BASIC,
        lambda o: TopologicalSortPass(),
        worth_running=lambda m: not _gates.is_sorted(m),
    ),
    PassSpec("inline_functions", "pre", BASIC, lambda o: InlinePass(), worth_running=lambda m: bool(m.functions)),
    PassSpec(
        "initializers_as_constants",
        "pre",
        BASIC,
        lambda o: InitializersAsConstantsPass(),
        when=lambda o: o.initializers_as_constants,
    ),
    PassSpec("fold_constants", "loop", BASIC, lambda o: FoldConstantsPass(o.fold_size_limit)),
    PassSpec("infer_shapes", "loop", BASIC, lambda o: InferShapesPass(), analysis=True),
    PassSpec("fold_shapes", "loop", BASIC, lambda o: FoldShapesPass(), needs=(_ops("Shape", "Size"),)),
    PassSpec("fold_if", "loop", BASIC, lambda o: FoldConstantIfPass(), needs=(_ops("If"),)),
    PassSpec("remove_noops", "loop", BASIC, lambda o: RemoveNoOpsPass(), needs=(_NOOP_OPS,)),
    PassSpec(
        "merge_consecutive",
        "loop",
        BASIC,
        lambda o: MergeConsecutivePass(),
        needs=(_ops("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Slice", "Cast"),),
    ),
    PassSpec(
        "fuse_pad", "loop", EXTENDED, lambda o: FusePadIntoConvPoolPass(), needs=(_ops("Pad"),), keeps_shapes=True
    ),
    PassSpec(
        "fuse_conv_bn",
        "loop",
        EXTENDED,
        lambda o: FuseConvBatchNormPass(),
        needs=(_ops("BatchNormalization"), _ops("Conv")),
        keeps_shapes=True,
    ),
    PassSpec(
        "fuse_conv_affine",
        "loop",
        EXTENDED,
        lambda o: FuseConvAffinePass(),
        needs=(_ARITHMETIC, _ops("Conv")),
        keeps_shapes=True,
    ),
    PassSpec(
        "fuse_bn_affine",
        "loop",
        EXTENDED,
        lambda o: FuseBatchNormAffinePass(),
        needs=(_ARITHMETIC, _ops("BatchNormalization")),
        keeps_shapes=True,
    ),
    PassSpec(
        "fuse_gemm_bn",
        "loop",
        EXTENDED,
        lambda o: FuseGemmBatchNormPass(),
        needs=(_ops("Gemm"), _ops("BatchNormalization")),
        keeps_shapes=True,
    ),
    PassSpec(
        "matmul_add_to_gemm",
        "loop",
        EXTENDED,
        lambda o: MatMulAddToGemmPass(),
        needs=(_ops("MatMul"), _ops("Add")),
        keeps_shapes=True,
    ),
    PassSpec(
        "cse",
        "loop",
        BASIC,
        lambda o: InEverySubgraphPass(CommonSubexpressionEliminationPass(), RANDOM_OPS),
        worth_running=_gates.may_share_subexpressions,
    ),
    PassSpec("remove_unused", "loop", BASIC, lambda o: RemoveDeadCodePass(), keeps_shapes=True),
    PassSpec("dedup_initializers", "post", BASIC, lambda o: DeduplicateInitializersPass(), leaves_no_dead_code=True),
    PassSpec(
        "remove_unused_functions",
        "post",
        BASIC,
        lambda o: RemoveUnusedFunctionsPass(),
        worth_running=lambda m: bool(m.functions),
    ),
    PassSpec("remove_unused", "post", BASIC, lambda o: RemoveDeadCodePass()),
    PassSpec(
        "topological_sort",
        "post",
        BASIC,
        lambda o: TopologicalSortPass(),
        worth_running=lambda m: not _gates.is_sorted(m),
    ),
)

PASS_NAMES: tuple[str, ...] = tuple(dict.fromkeys(spec.name for spec in PASSES))


class PassFailed(Exception):
    """A pass raised; the model it was editing may be half-changed."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(f"pass '{name}' failed: {type(error).__name__}: {error}")
        self.name = name
        self.error = error


@dataclass
class RunResult:
    changed: dict[str, int] = field(default_factory=dict)  # pass name -> rounds in which it changed the graph
    touched: list[str] = field(default_factory=list)  # every pass that changed anything, annotations included
    rounds: int = 0


ExtraPass = tuple[str, ir.passes.PassBase]


def _run_one(name: str, pass_: ir.passes.PassBase, model: ir.Model) -> bool:
    try:
        return bool(pass_(model).modified)
    except Exception as exc:
        raise PassFailed(name, exc) from exc


def run_passes(
    model: ir.Model,
    *,
    level: int = EXTENDED,
    disabled: Sequence[str] = (),
    options: Options | None = None,
    extra: Sequence[ExtraPass] = (),
    max_rounds: int = MAX_ROUNDS,
    shapes_inferred: bool = False,
) -> RunResult:
    """Run the enabled passes on ``model`` in place, the loop stage to a fixed point.

    ``extra`` passes (name, pass) join the loop stage after the built-in ones. ``shapes_inferred``: the
    model's shapes are already what ``infer_shapes`` would find (``infer_shapes.apply_inferred``), so it
    only runs once a pass has changed the model.
    """
    options = options or Options()
    skip = set(disabled)
    specs = [s for s in PASSES if s.level <= level and s.name not in skip and s.when(options)]
    result = RunResult()
    tracker = _ChangeTracker(model)
    if shapes_inferred:
        tracker.settled["infer_shapes"] = tracker.version

    def stage(spec_list: list[PassSpec]) -> bool:
        changed = False
        for spec in spec_list:
            if not tracker.should_run(spec):
                continue
            pass_ = spec.make(options)
            modified = _run_one(spec.name, pass_, model)
            tracker.ran(spec, modified, kept_shapes=spec.keeps_shapes or getattr(pass_, "kept_shapes", False))
            if not modified:
                continue
            if spec.name not in result.touched:
                result.touched.append(spec.name)
            if not spec.analysis:
                result.changed[spec.name] = result.changed.get(spec.name, 0) + 1
                changed = True
        return changed

    loop = [s for s in specs if s.stage == "loop"]
    extras = [(name, pass_) for name, pass_ in extra if name not in skip]
    with _quiet_onnx_ir():
        stage([s for s in specs if s.stage == "pre"])
        for _ in range(max_rounds):
            result.rounds += 1
            changed = stage(loop)
            for name, pass_ in extras:
                modified = _run_one(name, pass_, model)
                tracker.ran(None, modified)
                if modified:
                    result.changed[name] = result.changed.get(name, 0) + 1
                    if name not in result.touched:
                        result.touched.append(name)
                    changed = True
            if not changed:
                break
        stage([s for s in specs if s.stage == "post"])
    return result


class _ChangeTracker:
    """Counts the model's changes, to tell which passes need not run again (see the module docstring)."""

    def __init__(self, model: ir.Model) -> None:
        self.model = model
        self.version = 0
        # pass name -> the version at which it last found nothing to do (an analysis pass: last ran). Keyed by
        # name, so the post stage's DCE and sort are skipped when the loop or the pre stage just did them.
        self.settled: dict[str, int] = {}
        self._op_types: tuple[int, frozenset[str]] | None = None

    def should_run(self, spec: PassSpec) -> bool:
        if self.settled.get(spec.name) == self.version:
            return False
        if spec.needs:
            ops = self.op_types()
            if any(ops.isdisjoint(needed) for needed in spec.needs):
                return False
        if spec.worth_running(self.model):
            return True
        # The gate reads the model only: its "no" holds until the model changes (the post stage's sort check
        # after the pre stage's, on a model the passes left alone, walked the whole graph a second time).
        self.settled[spec.name] = self.version
        return False

    def ran(self, spec: PassSpec | None, modified: bool, kept_shapes: bool = False) -> None:
        """``kept_shapes``: the pass's changes, this time, left inferred shapes as shape inference would find
        them (its spec's ``keeps_shapes``, or the pass's own ``kept_shapes`` report after the run)."""
        if modified:
            self.version += 1
            shapes_were_inferred = self.settled.get("infer_shapes") == self.version - 1
            if spec is not None and shapes_were_inferred and (kept_shapes or _gates.shapes_complete(self.model)):
                self.settled["infer_shapes"] = self.version
            if spec is not None and spec.leaves_no_dead_code and self.settled.get("remove_unused") == self.version - 1:
                self.settled["remove_unused"] = self.version
        if spec is not None and (not modified or spec.analysis):
            self.settled[spec.name] = self.version

    def op_types(self) -> frozenset[str]:
        if self._op_types is None or self._op_types[0] != self.version:
            self._op_types = (self.version, _gates.op_types(self.model))
        return self._op_types[1]


@contextlib.contextmanager
def _quiet_onnx_ir() -> Iterator[None]:
    """onnx-ir's passes log at warning level what is routine here (an initializer not deduplicated because it
    is a graph output, shape inference giving up): noise on a user's terminal, so errors only."""
    logger = logging.getLogger("onnx_ir")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
