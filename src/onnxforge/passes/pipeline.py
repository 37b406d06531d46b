"""The named pass list and the fixed-point driver that ``simplify`` and ``presets.optimize`` share.

Passes run in three stages: ``pre`` once (sorting, inlining, initializers as constants), ``loop`` until
no pass changes the graph (each one enables others: folding feeds shape folding feeds no-op removal feeds
fusion), and ``post`` once (dedup, DCE, final sort). Every pass has a name, used by ``skip=``, by the
report, and by the verifier's bisection. Level 1 passes preserve the graph's computation exactly up to
constant evaluation; level 2 passes are fusions that re-associate float arithmetic.

A pass that raises aborts the run with :class:`PassFailed`; since passes edit in place, the caller starts
again from a fresh copy of the model with that pass disabled.
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
    RemoveUnusedNodesPass,
    TopologicalSortPass,
)

from onnxforge.passes.constant_folding import FoldConstantsPass
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


PASSES: tuple[PassSpec, ...] = (
    PassSpec("topological_sort", "pre", BASIC, lambda o: TopologicalSortPass()),
    PassSpec("inline_functions", "pre", BASIC, lambda o: InlinePass()),
    PassSpec(
        "initializers_as_constants",
        "pre",
        BASIC,
        lambda o: InitializersAsConstantsPass(),
        when=lambda o: o.initializers_as_constants,
    ),
    PassSpec("fold_constants", "loop", BASIC, lambda o: FoldConstantsPass(o.fold_size_limit)),
    PassSpec("infer_shapes", "loop", BASIC, lambda o: InferShapesPass(), analysis=True),
    PassSpec("fold_shapes", "loop", BASIC, lambda o: FoldShapesPass()),
    PassSpec("fold_if", "loop", BASIC, lambda o: FoldConstantIfPass()),
    PassSpec("remove_noops", "loop", BASIC, lambda o: RemoveNoOpsPass()),
    PassSpec("merge_consecutive", "loop", BASIC, lambda o: MergeConsecutivePass()),
    PassSpec("fuse_pad", "loop", EXTENDED, lambda o: FusePadIntoConvPoolPass()),
    PassSpec("fuse_conv_bn", "loop", EXTENDED, lambda o: FuseConvBatchNormPass()),
    PassSpec("fuse_conv_affine", "loop", EXTENDED, lambda o: FuseConvAffinePass()),
    PassSpec("fuse_bn_affine", "loop", EXTENDED, lambda o: FuseBatchNormAffinePass()),
    PassSpec("fuse_gemm_bn", "loop", EXTENDED, lambda o: FuseGemmBatchNormPass()),
    PassSpec("matmul_add_to_gemm", "loop", EXTENDED, lambda o: MatMulAddToGemmPass()),
    PassSpec("cse", "loop", BASIC, lambda o: InEverySubgraphPass(CommonSubexpressionEliminationPass(), RANDOM_OPS)),
    PassSpec("remove_unused", "loop", BASIC, lambda o: RemoveUnusedNodesPass()),
    PassSpec("dedup_initializers", "post", BASIC, lambda o: DeduplicateInitializersPass()),
    PassSpec("remove_unused_functions", "post", BASIC, lambda o: RemoveUnusedFunctionsPass()),
    PassSpec("remove_unused", "post", BASIC, lambda o: RemoveUnusedNodesPass()),
    PassSpec("topological_sort", "post", BASIC, lambda o: TopologicalSortPass()),
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
) -> RunResult:
    """Run the enabled passes on ``model`` in place, the loop stage to a fixed point.

    ``extra`` passes (name, pass) join the loop stage after the built-in ones.
    """
    options = options or Options()
    skip = set(disabled)
    specs = [s for s in PASSES if s.level <= level and s.name not in skip and s.when(options)]
    result = RunResult()

    def stage(spec_list: list[PassSpec]) -> bool:
        changed = False
        for spec in spec_list:
            if not _run_one(spec.name, spec.make(options), model):
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
                if _run_one(name, pass_, model):
                    result.changed[name] = result.changed.get(name, 0) + 1
                    if name not in result.touched:
                        result.touched.append(name)
                    changed = True
            if not changed:
                break
        stage([s for s in specs if s.stage == "post"])
    return result


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
