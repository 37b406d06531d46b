"""Plan-time rewrites of the step list: constant folding, Conv+BatchNormalization, op+Relu, in-place elementwise.

The compiler hands over one :class:`StepSpec` per node that survived folding; :func:`fuse` returns a shorter
list in which some steps do the work of several nodes. This module holds the step types, the in-place rule
and the order of the rewrites; the rewrites themselves live in fusion_pairs.py (Conv+affine, op+Relu/Clip,
GELU), fusion_transformer.py, fusion_preact.py, fusion_chain.py and fusion_layout.py. Every rewrite keeps the numbers of the unfused plan
(up to float rounding) and every fused step keeps the :class:`NodeInfo` of all the nodes it covers, so errors
and profiles still name them.

In-place ("dying input") rule: a step may write its result into an input buffer only when that buffer is
owned by exactly this step: it was freshly allocated by its producer (a kernel known never to return a view
or an alias of its inputs), no other step reads it, and it is not a graph output, a graph input or a constant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge.runtime.kernels._relu import relu_into
from onnxforge.runtime.registry import KernelDef

_NONE = 1  # plan.py's slot that always holds None (an omitted optional input)
_RELU_PRODUCERS = frozenset({"Conv", "Add", "Sum", "BatchNormalization", "MatMul"})
# The spec's default BatchNormalization epsilon, as a float32 value (see kernels/batch_norm.py).
_BN_EPSILON = float(np.float32(1e-5))

# Ops whose results depend on more than their inputs, or that run subgraphs: never evaluated at build time.
_NOT_FOLDABLE = frozenset(
    {
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "Dropout",
        "If",
        "Loop",
        "Scan",
        "SequenceMap",
    }
)

# Kernels whose (first) output is always a new array that aliases none of their inputs.
# (Sum only with two or more inputs: with one it returns that input.)
_FRESH = frozenset({"Conv", "Relu", "Add", "Sub", "Mul", "Div", "Sum", "BatchNormalization", "MatMul"})
_INPLACE_BINARY: dict[str, Any] = {
    "Add": np.add,
    "Sum": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
}


class NodeInfo:
    """What an error message or a profile event needs to name a node (or the nodes of a fused step)."""

    __slots__ = ("domain", "fused", "name", "op_type", "opset")

    def __init__(self, name: str, op_type: str, domain: str, opset: int) -> None:
        self.name, self.op_type, self.domain, self.opset = name, op_type, domain, opset
        self.fused: tuple[NodeInfo, ...] = ()

    def describe(self) -> str:
        own = f"node '{self.name}' ({self.domain or 'ai.onnx'}::{self.op_type}, opset {self.opset})"
        if not self.fused:
            return own
        return own + " fused with " + ", ".join(f"'{i.name}' ({i.op_type})" for i in self.fused)

    def merged(self, *others: NodeInfo) -> NodeInfo:
        """This node's info, also covering ``others`` (and whatever they cover), in one pass: merging a long
        chain one by one would copy the growing tuple each time."""
        info = NodeInfo(self.name, self.op_type, self.domain, self.opset)
        fused = list(self.fused)
        for other in others:
            fused.append(other)
            fused.extend(other.fused)
        info.fused = tuple(fused)
        return info


class StepSpec:
    """One step before it is frozen into the plan: its call, slots, and what fusion needs to know.

    The call may be deferred (:meth:`deferred`): made when first read, at build time still. A Conv's weight
    packing waits so, because a rewrite that replaces the step's call (the channels-last chains, the
    pre-activation and affine folds) would throw the packed weight away unread.
    """

    __slots__ = ("_call", "_make_call", "activation", "attrs", "info", "ins", "kdef", "op", "outs", "weights")

    def __init__(
        self,
        call: Callable[..., Any],
        info: NodeInfo,
        ins: list[int],
        outs: tuple[int, ...],
        kdef: KernelDef | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        self._call, self.info, self.ins, self.outs, self.kdef, self.attrs = call, info, ins, outs, kdef, attrs or {}
        self._make_call: Callable[[], Callable[..., Any]] | None = None
        # The ONNX op type for a default-domain node, else "" (custom domains fuse nothing). An attribute, not a
        # property: the fusions read it a dozen times per step, and ``info`` is never replaced.
        self.op = info.op_type if info.domain == "" else ""
        # A Conv whose weight and bias were rewritten at build time: (W, B), no longer in any slot.
        self.weights: tuple[np.ndarray, np.ndarray] | None = None
        # An in-place activation fused onto the end of this step's call (kept so a rewrite can re-wrap it).
        self.activation: Callable[[np.ndarray], np.ndarray] | None = None

    @classmethod
    def deferred(
        cls,
        make_call: Callable[[], Callable[..., Any]],
        info: NodeInfo,
        ins: list[int],
        outs: tuple[int, ...],
        kdef: KernelDef | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> StepSpec:
        """A step whose call ``make_call()`` makes on the first read of :attr:`call` (never, if a rewrite
        replaces it first)."""
        spec = cls(_not_made, info, ins, outs, kdef, attrs)
        spec._make_call = make_call
        return spec

    @property
    def call(self) -> Callable[..., Any]:
        if self._make_call is not None:
            self._call, self._make_call = self._make_call(), None
        return self._call

    @call.setter
    def call(self, call: Callable[..., Any]) -> None:
        self._call, self._make_call = call, None


def _not_made(*args: Any) -> Any:
    raise AssertionError("a deferred step call was run before it was made")


def foldable(op_type: str, domain: str, kdef: KernelDef) -> bool:
    """Whether a node whose inputs are all constant may be evaluated once at build time."""
    return domain == "" and op_type not in _NOT_FOLDABLE and "_outer" not in kdef.context


def freeze_constant(value: Any) -> Any:
    """Folded values live in the plan's template and are shared by every run: nobody may write to them."""
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    return value


class FusionContext:
    """The compiler state a rewrite may read (constants) or extend (new constant slots)."""

    def __init__(self, template: list[Any], constant_slots: set[int], protected: set[int]) -> None:
        self.template = template
        self.constant_slots = constant_slots
        self.protected = protected  # graph inputs and outputs: never written in place, never fused away

    def constant(self, slot: int) -> np.ndarray | None:
        value = self.template[slot] if slot in self.constant_slots else None
        return value if isinstance(value, np.ndarray) else None

    def add_constant(self, value: np.ndarray) -> int:
        self.template.append(freeze_constant(value))
        slot = len(self.template) - 1
        self.constant_slots.add(slot)
        return slot


def fuse(specs: list[StepSpec], ctx: FusionContext) -> list[StepSpec]:
    # Imported here: each of these modules imports this one.
    from onnxforge.runtime.fusion_chain import fuse_elementwise_chains  # noqa: PLC0415
    from onnxforge.runtime.fusion_layout import channels_last_chains  # noqa: PLC0415
    from onnxforge.runtime.fusion_pairs import fuse_gelu, fuse_pairs  # noqa: PLC0415
    from onnxforge.runtime.fusion_preact import fold_preactivations  # noqa: PLC0415
    from onnxforge.runtime.fusion_transformer import fuse_transformer  # noqa: PLC0415

    # A rewrite runs only where its anchor op is present: each one maps every step's readers first, which
    # on a graph without the op (a 1,000-node chain of Adds) was most of the plan's fusion time. The ops are
    # listed once, before the rewrites: none of them makes a step of an anchor op out of other ops, so a
    # rewrite that finds its anchor gone runs for nothing, and changes nothing.
    present = {spec.op for spec in specs}
    if "Erf" in present:
        specs = fuse_gelu(specs, ctx)
    if not present.isdisjoint(("MatMul", "Softmax")):
        specs = fuse_transformer(specs, ctx)
    if "BatchNormalization" in present:
        specs = fold_preactivations(specs, ctx)
    # In-place next: a later op+Relu merge then wraps the in-place call rather than losing it.
    _in_place(specs, ctx)
    specs = fuse_pairs(specs, ctx)
    specs = fuse_elementwise_chains(specs, ctx)
    return channels_last_chains(specs, ctx) if "Conv" in present else specs


def _readers(specs: list[StepSpec]) -> dict[int, list[int]]:
    readers: dict[int, list[int]] = {}
    get = readers.get
    for index, spec in enumerate(specs):
        ins = spec.ins
        # Each reader once, in input order; most steps read one or two distinct slots, which need no dedupe.
        distinct = len(ins) < 2 or (len(ins) == 2 and ins[0] != ins[1])
        for slot in ins if distinct else dict.fromkeys(ins):
            users = get(slot)
            if users is None:
                readers[slot] = [index]
            else:
                users.append(index)
    return readers


def _sole_reader(slot: int, readers: dict[int, list[int]], ctx: FusionContext) -> int | None:
    users = readers.get(slot)
    return users[0] if users is not None and len(users) == 1 and slot not in ctx.protected else None


def _in_place(specs: list[StepSpec], ctx: FusionContext) -> None:
    """Let elementwise steps write into an input buffer that dies with them (see the module docstring)."""
    readers = _readers(specs)
    protected = ctx.protected

    def sole_reader(slot: int) -> bool:  # _sole_reader inlined: this runs for every step
        users = readers.get(slot)
        return users is not None and len(users) == 1 and slot not in protected

    # Each slot has one producer (the graph is SSA; discarded outputs share a slot that nobody reads).
    owned = {spec.outs[0] for spec in specs if spec.outs and _is_fresh(spec) and sole_reader(spec.outs[0])}
    for spec in specs:
        op, ins = spec.op, spec.ins
        ufunc = _INPLACE_BINARY.get(op)
        # Opset < 7 binary ops broadcast by attribute, not by numpy's rules; Sum broadcasts from opset 8.
        if ufunc is not None and len(ins) == 2 and spec.kdef is not None and (spec.kdef.since >= 7 or op == "Sum"):
            first, second = ins
            if first != second and (first in owned or second in owned):
                spec.call = _binary_into(ufunc, 0 if first in owned else 1, spec.call)
        elif op == "Relu" and ins and ins[0] in owned:
            spec.call = _relu_into
        else:
            continue
        # The result is the dying buffer or a fresh array: either way it is owned if one step reads it.
        if sole_reader(spec.outs[0]):
            owned.add(spec.outs[0])


def _is_fresh(spec: StepSpec) -> bool:
    return spec.op in _FRESH and (spec.op != "Sum" or len(spec.ins) >= 2)


def _binary_into(ufunc: Any, position: int, fallback: Callable[..., Any]) -> Callable[..., Any]:
    def binary_in_place(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        target = b if position else a
        other = a if position else b
        # Same dtype (no silent downcast), a real float buffer, and the result must have the target's shape.
        if (
            type(target) is np.ndarray
            and target.dtype == other.dtype
            and target.dtype.kind == "f"
            and target.flags.writeable
            and other.ndim <= target.ndim
        ):
            try:
                return ufunc(a, b, target)  # out, positionally: ~30 ns cheaper than the keyword
            except ValueError:  # the broadcast result is larger than the target: nothing was written
                pass
        return fallback(a, b)

    return binary_in_place


def _relu_into(x: np.ndarray) -> np.ndarray:
    if type(x) is np.ndarray and x.flags.writeable and x.dtype.kind == "f":
        return relu_into(x)
    return np.maximum(x, x.dtype.type(0))
