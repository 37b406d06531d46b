"""The compiled execution plan: a topologically ordered list of bound steps over integer slots.

Everything that does not depend on the run's inputs is settled here, once: the kernel for each node
(highest since <= opset), its attributes (bound with ``functools.partial``), constant inputs and
``Constant`` nodes (stored in the slot template), optional ``prepare`` hooks (weight packing), and the
slots to free after each step (an intermediate is dropped right after its last use).

Subgraphs (If/Loop/Scan bodies) become sub-plans. A sub-plan lists the outer-scope values its nodes read
(``captures``); the parent step passes them in, keyed by their onnx-ir ``Value``, so nesting works to
any depth.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxforge._errors import Fail, InvalidGraph, NotImplemented, OnnxForgeError
from onnxforge.ir import order
from onnxforge.ir.arrays import tensor_array
from onnxforge.ir.dtypes import np_dtype_for
from onnxforge.runtime import branches, fusion
from onnxforge.runtime.fusion import FusionContext, NodeInfo, StepSpec
from onnxforge.runtime.registry import REGISTRY, KernelDef, Registry, canonical_domain

_DISCARD = 0  # slot that receives outputs the node leaves unnamed
_NONE = 1  # slot that always holds None, for omitted optional inputs
assert fusion._NONE == _NONE
_FIRST_SLOT = 2

# The terminate check and profiler of the run in progress, so sub-plans run by control-flow kernels see them.
_OBSERVERS: contextvars.ContextVar[tuple[Callable[[], bool] | None, Profiler | None]] = contextvars.ContextVar(
    "onnxforge_run_observers", default=(None, None)
)

Step = tuple[Callable[..., Any], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


class Profiler:
    """Collects ORT-style ``<node>_kernel_time`` events (chrome-trace, durations in µs)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._origin = time.perf_counter()

    def record(self, info: NodeInfo, start: float, end: float, inputs: list[Any], outputs: list[Any]) -> None:
        self._event(info, start, end, inputs, outputs, info.fused)
        # A fused step did the nodes' work in one call: the others get an event each, of zero length.
        for other in info.fused:
            self._event(other, end, end, outputs, outputs, ())

    def _event(
        self, info: NodeInfo, start: float, end: float, inputs: list[Any], outputs: list[Any], fused: tuple[NodeInfo, ...]
    ) -> None:
        args: dict[str, Any] = {
            "op_name": info.op_type,
            "input_type_shape": [_shape_of(v) for v in inputs],
            "output_type_shape": [_shape_of(v) for v in outputs],
        }
        if fused:
            args["fused_nodes"] = [other.name for other in fused]
        self.events.append(
            {
                "cat": "Node",
                "pid": 0,
                "tid": 0,
                "ph": "X",
                "name": f"{info.name}_kernel_time",
                "ts": int((start - self._origin) * 1e6),
                "dur": max(int((end - start) * 1e6), 0),
                "args": args,
            }
        )


def _shape_of(value: Any) -> dict[str, list[int]]:
    if isinstance(value, np.ndarray):
        return {str(value.dtype): list(value.shape)}
    return {type(value).__name__: []}


class Plan:
    """A runnable plan for one graph. ``run`` is re-entrant: each call has its own slot list."""

    def __init__(
        self,
        steps: list[Step],
        infos: list[NodeInfo],
        template: list[Any],
        input_slots: list[int],
        output_slots: list[int],
        captures: list[tuple[ir.Value, int]],
        guarded: Sequence[int] = (),
        fallback: Callable[[], Plan] | None = None,
    ) -> None:
        self.steps = steps
        self.infos = infos
        self._template = template
        self.input_slots = input_slots
        self.output_slots = output_slots
        self.captures = captures
        # Overridable initializers this plan folded as constants: fed anything but their default object,
        # the run goes to the unoptimized ``fallback`` plan (built on first need, same slot numbers).
        self._guarded = tuple(guarded)
        self._fallback = fallback
        self._fallback_plan: Plan | None = None
        # Independent branches that run side by side (ExecutionMode.ORT_PARALLEL; see branches.py).
        self.sections: list[branches.Section] = []
        # The static shape each output declares (None: not fully known): a Loop or Scan that runs zero times
        # shapes its empty scan outputs from its body's.
        self.output_shapes: list[tuple[int, ...] | None] = [None] * len(output_slots)

    @property
    def captured_values(self) -> list[ir.Value]:
        return [value for value, _ in self.captures]

    def default_for(self, slot: int) -> Any:
        """The build-time value of a slot: an overridable initializer's default, else None."""
        return self._template[slot]

    def pruned(self, output_slots: list[int]) -> Plan:
        """A plan that computes only ``output_slots``: steps nothing needed are dropped."""
        needed = set(output_slots)
        keep: list[int] = []
        for index in range(len(self.steps) - 1, -1, -1):
            _, ins, outs, _ = self.steps[index]
            if needed.intersection(outs):
                keep.append(index)
                needed.update(ins)
        keep.reverse()
        fallback = self._fallback
        return Plan(
            [self.steps[i] for i in keep],
            [self.infos[i] for i in keep],
            self._template,
            self.input_slots,
            output_slots,
            self.captures,
            self._guarded,
            None if fallback is None else lambda: fallback().pruned(output_slots),
        )

    def run(
        self,
        inputs: Sequence[Any],
        outer: Mapping[ir.Value, Any] | None = None,
        *,
        overrides: Mapping[int, Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
        profiler: Profiler | None = None,
    ) -> list[Any]:
        values = self._template.copy()
        for slot, value in zip(self.input_slots, inputs, strict=True):
            values[slot] = value
        if overrides:
            for slot, value in overrides.items():
                values[slot] = value
        if self._guarded and any(values[slot] is not self._template[slot] for slot in self._guarded):
            return self._unoptimized().run(
                inputs, outer, overrides=overrides, should_stop=should_stop, profiler=profiler
            )
        if self.captures:
            assert outer is not None, "a sub-plan with captures needs its outer values"
            for value_ref, slot in self.captures:
                values[slot] = outer[value_ref]
        if should_stop is None and profiler is None:
            # A sub-plan (If/Loop/Scan body) inherits its run's observers.
            should_stop, profiler = _OBSERVERS.get()
        if should_stop is None and profiler is None:
            self._run_steps(values)
        else:
            token = _OBSERVERS.set((should_stop, profiler))
            try:
                self._run_steps_observed(values, should_stop, profiler)
            finally:
                _OBSERVERS.reset(token)
        return [values[slot] for slot in self.output_slots]

    def _unoptimized(self) -> Plan:
        if self._fallback_plan is None:
            assert self._fallback is not None
            self._fallback_plan = self._fallback()
        return self._fallback_plan

    def _run_steps(self, values: list[Any], first: int = 0, stop: int | None = None) -> None:
        if self.sections and stop is None:
            for section in self.sections:
                self._run_steps(values, first, section.start)
                branches.run_section(section, values, self._execute)
                first = section.end
            stop = len(self.steps)
        steps = self.steps if first == 0 and stop is None else self.steps[first:stop]
        self._execute(values, enumerate(steps, first))

    def _execute(self, values: list[Any], indexed_steps: Iterable[tuple[int, Step]]) -> None:
        """Run ``(plan index, step)`` pairs in order: store each result, free what the step frees."""
        index = 0
        try:
            for index, (call, ins, outs, frees) in indexed_steps:  # noqa: B007 - read in except
                result = call(*[values[i] for i in ins])
                if type(result) is tuple:
                    for slot, item in zip(outs, result):
                        values[slot] = item
                else:
                    values[outs[0]] = result
                for slot in frees:
                    values[slot] = None
        except Exception as exc:
            raise self._node_error(index, exc) from exc

    def _run_steps_observed(
        self, values: list[Any], should_stop: Callable[[], bool] | None, profiler: Profiler | None
    ) -> None:
        index = 0
        try:
            for index, (call, ins, outs, frees) in enumerate(self.steps):
                if should_stop is not None and should_stop():
                    raise Fail("Exiting due to terminate flag being set to true.")
                args = [values[i] for i in ins]
                start = time.perf_counter()
                result = call(*args)
                results = result if type(result) is tuple else (result,)
                if profiler is not None:
                    profiler.record(self.infos[index], start, time.perf_counter(), args, list(results))
                for slot, item in zip(outs, results):
                    values[slot] = item
                for slot in frees:
                    values[slot] = None
        except Exception as exc:
            raise self._node_error(index, exc) from exc

    def _node_error(self, index: int, exc: Exception) -> Exception:
        info = self.infos[index]
        if isinstance(exc, OnnxForgeError):
            if info.describe() in str(exc) or "terminate flag" in str(exc):
                return exc
            return type(exc)(f"Running {info.describe()} failed: {exc}")
        return Fail(f"Running {info.describe()} failed: {type(exc).__name__}: {exc}")


def _static_shape(value: ir.Value) -> tuple[int, ...] | None:
    shape = value.shape
    if shape is None or not all(isinstance(dim, int) for dim in shape):
        return None
    return tuple(int(dim) for dim in shape)


class PlanBuilder:
    """Compiles an onnx-ir graph (and, recursively, its subgraphs) into a :class:`Plan`."""

    def __init__(self, opsets: Mapping[str, int], registry: Registry = REGISTRY, *, optimize: bool = True) -> None:
        self.opsets = {canonical_domain(d): v for d, v in opsets.items()}
        self.registry = registry
        # Constant folding and fusion (fusion.py); off gives one step per node, for checking them.
        self.optimize = optimize

    def build(self, graph: ir.Graph, *, is_subgraph: bool = False) -> Plan:
        return _GraphCompiler(self, graph, is_subgraph).compile()


class _GraphCompiler:
    def __init__(self, builder: PlanBuilder, graph: ir.Graph, is_subgraph: bool) -> None:
        self.builder = builder
        self.graph = graph
        self.is_subgraph = is_subgraph
        self.slots: dict[ir.Value, int] = {}
        self.template: list[Any] = [None, None]
        self.captures: list[tuple[ir.Value, int]] = []
        self.specs: list[StepSpec] = []
        self.node_count = 0  # non-Constant nodes seen, for the default names of unnamed nodes
        self.guarded: list[int] = []  # overridable initializers treated as constants (see Plan)
        # Slots whose value is known at build time: initializers that are not inputs, folded Constant nodes.
        self.constant_slots: set[int] = set()

    def _new_slot(self, value: ir.Value | None, initial: Any = None) -> int:
        slot = len(self.template)
        self.template.append(initial)
        if value is not None:
            self.slots[value] = slot
        return slot

    def _slot_for_input(self, value: ir.Value | None, reader: str) -> int:
        if value is None:
            return _NONE
        slot = self.slots.get(value)
        if slot is not None:
            return slot
        if self.is_subgraph:
            slot = self._new_slot(value)
            self.captures.append((value, slot))
            return slot
        raise InvalidGraph(f"{reader} reads '{value.name}', which no node, input or initializer produces")

    def compile(self) -> Plan:
        graph = self.graph
        try:
            if not order.is_sorted(graph):  # the optimizer leaves it sorted; the sort costs ~5 us a node anyway
                graph.sort()
        except Exception as exc:  # onnx-ir raises a plain error on cycles
            raise InvalidGraph(f"graph '{graph.name}' cannot be sorted topologically: {exc}") from exc
        _forget_former_io(graph)
        input_slots = [self._new_slot(value) for value in graph.inputs]
        # Old models list every initializer as an input too; folding them pays, guarded by a fallback plan.
        builder_optimizes = self.builder.optimize and not self.is_subgraph
        for value in graph.initializers.values():
            array = _tensor_to_numpy(value)
            if array is not None:
                value.const_value = _detached(value.const_value, array)
            if value in self.slots:  # an initializer that is also an input: its default
                self.template[self.slots[value]] = array
                if builder_optimizes and array is not None:
                    self.guarded.append(self.slots[value])
                    self.constant_slots.add(self.slots[value])
            else:
                self.constant_slots.add(self._new_slot(value, array))
        for node in graph:
            self._compile_node(node)
        output_slots = [self._slot_for_input(value, f"graph output '{value.name}'") for value in graph.outputs]
        if self.builder.optimize:
            protected = set(input_slots) | set(output_slots)
            self.specs = fusion.fuse(self.specs, FusionContext(self.template, self.constant_slots, protected))
            self._drop_unread_constants(set(output_slots))
        steps = self._steps_with_frees(set(output_slots))
        infos = [spec.info for spec in self.specs]
        fallback = None
        if self.guarded:
            builder = PlanBuilder(self.builder.opsets, self.builder.registry, optimize=False)
            fallback = functools.partial(builder.build, graph)
        plan = Plan(steps, infos, self.template, input_slots, output_slots, self.captures, self.guarded, fallback)
        plan.output_shapes = [_static_shape(value) for value in graph.outputs]
        return plan

    def _compile_node(self, node: ir.Node) -> None:
        domain = canonical_domain(node.domain)
        opset = self.builder.opsets.get(domain)
        name = node.name or f"{node.op_type}_{self.node_count}"
        if opset is None:
            raise InvalidGraph(f"node '{name}' ({node.op_type}) uses domain '{node.domain}', which the model does not import")
        info = NodeInfo(name, node.op_type, domain, opset)
        kdef = self.builder.registry.resolve(domain, node.op_type, opset)
        if kdef is None:
            raise NotImplemented(
                f"Could not find an implementation for {node.op_type}({opset}) node with name '{name}' "
                f"in domain '{domain or 'ai.onnx'}' (opset {opset})"
            )
        inputs = list(node.inputs)
        while inputs and inputs[-1] is None:
            inputs.pop()
        in_slots = [self._slot_for_input(value, info.describe()) for value in inputs]
        attrs, captured = self._bind_attributes(node, kdef, info)
        call = self._make_call(node, kdef, info, attrs, in_slots)
        if captured:
            call = _with_outer(call, len(in_slots), captured)
            in_slots += [self._slot_for_input(value, info.describe()) for value in captured]
        out_slots = tuple(self._new_slot(value) if value.name else _DISCARD for value in node.outputs)
        if node.op_type == "Constant" and domain == "" and not in_slots:
            self._fold_constant(call, info, out_slots)
            return
        self.node_count += 1
        if (
            self.builder.optimize
            and in_slots
            and not captured
            and all(slot in self.constant_slots for slot in in_slots)
            and fusion.foldable(node.op_type, domain, kdef)
            and self._try_fold(call, in_slots, out_slots)
        ):
            return
        self.specs.append(StepSpec(call, info, in_slots, out_slots, kdef, attrs))

    def _bind_attributes(self, node: ir.Node, kdef: KernelDef, info: NodeInfo) -> tuple[dict[str, Any], list[ir.Value]]:
        attrs: dict[str, Any] = {}
        captured: list[ir.Value] = []
        for attr_name, attr in node.attributes.items():
            if attr_name not in kdef.attributes and not kdef.accepts_any_attribute:
                raise NotImplemented(f"{info.describe()}: attribute '{attr_name}' is not supported by kernel {kdef.name}")
            if attr.is_ref():
                raise InvalidGraph(f"{info.describe()}: attribute '{attr_name}' refers to a function attribute outside a function")
            attrs[attr_name] = self._attribute_value(attr, captured)
            if attr.type == ir.AttributeType.TENSOR and (detached := _detached(attr.value, attrs[attr_name])) is not attr.value:
                node.attributes[attr_name] = ir.AttrTensor(attr_name, detached, doc_string=attr.doc_string)
        missing = sorted(kdef.required - set(attrs))
        if missing:
            raise InvalidGraph(f"{info.describe()}: required attribute(s) {missing} missing")
        if "_num_outputs" in kdef.context:
            attrs["_num_outputs"] = len(node.outputs)
        if "_node" in kdef.context:
            attrs["_node"] = node
        if "_opset" in kdef.context:
            attrs["_opset"] = info.opset
        if "_output_dtypes" in kdef.context:
            attrs["_output_dtypes"] = tuple(
                np_dtype_for(value.dtype) if value.dtype is not None and value.dtype != ir.DataType.UNDEFINED else None
                for value in node.outputs
            )
        return attrs, captured

    def _attribute_value(self, attr: ir.Attr, captured: list[ir.Value]) -> Any:
        kind = attr.type
        value = attr.value
        if kind in (ir.AttributeType.INT, ir.AttributeType.FLOAT, ir.AttributeType.STRING):
            return value
        if kind in (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS):
            return list(value)
        if kind == ir.AttributeType.TENSOR:
            return _ir_tensor_numpy(value)
        if kind == ir.AttributeType.TENSORS:
            return [_ir_tensor_numpy(t) for t in value]
        if kind == ir.AttributeType.GRAPH:
            return self._subplan(value, captured)
        if kind == ir.AttributeType.GRAPHS:
            return [self._subplan(g, captured) for g in value]
        return value

    def _subplan(self, graph: ir.Graph, captured: list[ir.Value]) -> Plan:
        plan = self.builder.build(graph, is_subgraph=True)
        for value in plan.captured_values:
            if value not in captured:
                captured.append(value)
        return plan

    def _make_call(
        self, node: ir.Node, kdef: KernelDef, info: NodeInfo, attrs: dict[str, Any], in_slots: list[int]
    ) -> Callable[..., Any]:
        if kdef.prepare is not None:
            constants = [self.template[s] if s in self.constant_slots else None for s in in_slots]
            plain_attrs = {k: v for k, v in attrs.items() if k not in ("_outer",)}
            prepared = kdef.prepare(constants, **plain_attrs)
            if prepared is not None:
                return prepared
        return functools.partial(kdef.fn, **attrs) if attrs else kdef.fn

    def _fold_constant(self, call: Callable[..., Any], info: NodeInfo, out_slots: tuple[int, ...]) -> None:
        try:
            result = call()
        except Exception as exc:
            raise InvalidGraph(f"{info.describe()}: cannot evaluate the constant: {exc}") from exc
        self.template[out_slots[0]] = result
        self.constant_slots.add(out_slots[0])

    def _try_fold(self, call: Callable[..., Any], in_slots: list[int], out_slots: tuple[int, ...]) -> bool:
        """Evaluate a node with only constant inputs now; on any error it stays a step and fails at run time."""
        try:
            result = call(*[self.template[slot] for slot in in_slots])
        except Exception:
            return False
        results = result if type(result) is tuple else (result,)
        if len(results) != len(out_slots) or not all(isinstance(r, np.ndarray) for r in results):
            return False  # sequences, maps and optionals may be mutated by their consumers
        for slot, value in zip(out_slots, results):
            if slot != _DISCARD:
                self.template[slot] = fusion.freeze_constant(value)
                self.constant_slots.add(slot)
        return True

    def _drop_unread_constants(self, keep: set[int]) -> None:
        """Constants no step reads any more (folded into packed weights) need not stay in memory."""
        read = {slot for spec in self.specs for slot in spec.ins}
        for slot in self.constant_slots.difference(self.guarded):
            if slot not in read and slot not in keep:
                self.template[slot] = None

    def _steps_with_frees(self, keep: set[int]) -> list[Step]:
        last_use: dict[int, int] = {}
        for index, spec in enumerate(self.specs):
            for slot in spec.ins:
                last_use[slot] = index
        frees: list[list[int]] = [[] for _ in self.specs]
        for slot, index in last_use.items():
            if slot >= _FIRST_SLOT and slot not in keep:
                frees[index].append(slot)
        return [(spec.call, tuple(spec.ins), spec.outs, tuple(frees[i])) for i, spec in enumerate(self.specs)]


def _with_outer(call: Callable[..., Any], arity: int, captured: list[ir.Value]) -> Callable[..., Any]:
    """Split the trailing captured values off the positional inputs and hand them over as ``_outer``."""
    keys = tuple(captured)

    def call_with_outer(*args: Any) -> Any:
        return call(*args[:arity], _outer=dict(zip(keys, args[arity:])))

    return call_with_outer


def _ir_tensor_numpy(tensor: ir.TensorProtocol) -> np.ndarray:
    return tensor_array(tensor)  # decoded once per tensor, shared with the optimizer's reads


def _forget_former_io(graph: ir.Graph) -> None:
    """Drop onnx-ir's bookkeeping of values that were once graph inputs or outputs but are no more.

    onnx-ir (1.1) counts each value's places in ``graph.inputs``/``outputs`` in a Counter that keeps an
    entry at zero once the value leaves; its shape inference lists every initializer as an input for a
    moment, so initializers the optimizer later folded away (and the protobuf their tensors read from,
    with every weight in it) would stay alive as long as the graph.
    """
    for io in (graph.inputs, graph.outputs):
        counter = getattr(io, "_ref_counter", None)
        if isinstance(counter, Counter):
            for value in [value for value, count in counter.items() if count <= 0]:
                del counter[value]


def _detached(tensor: ir.TensorProtocol, array: np.ndarray) -> ir.TensorProtocol:
    """``tensor`` over ``array`` (the plan's copy) instead of over the model's protobuf.

    Reading raw data out of a protobuf tensor copies it, and any tensor still backed by the protobuf keeps
    the whole parsed model (every weight) in memory. Once each tensor holds the array the plan already
    has, the session can let the protobuf go before weights are packed: one copy of the weights less.
    """
    if not isinstance(tensor, ir.serde.TensorProtoTensor):
        return tensor  # already in memory, or external data (mapped from its file, not held by the protobuf)
    if tensor.dtype == ir.DataType.STRING:
        return ir.StringTensor(tensor.numpy(), shape=tensor.shape, name=tensor.name, doc_string=tensor.doc_string)
    return ir.Tensor(array, dtype=tensor.dtype, name=tensor.name, doc_string=tensor.doc_string)


def _tensor_to_numpy(value: ir.Value) -> np.ndarray | None:
    if value.const_value is None:
        return None
    try:
        return _ir_tensor_numpy(value.const_value)
    except OnnxForgeError:
        raise
    except Exception as exc:
        raise InvalidGraph(f"initializer '{value.name}' cannot be read: {exc}") from exc
