"""Building a :class:`~onnxforge.runtime.plan.Plan` from an onnx-ir graph (see plan.py for what a plan is).

The builder resolves each node's kernel (highest since <= opset), binds its attributes, folds constant
inputs and ``Constant`` nodes into the slot template, runs the ``prepare`` hooks (weight packing), hands the
steps to the plan-time fusions (fusion.py) and computes the slots to free after each step. Subgraphs
(If/Loop/Scan bodies) are built as sub-plans with the outer-scope values they capture.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxforge._errors import InvalidGraph, NotImplemented, OnnxForgeError
from onnxforge.ir import order
from onnxforge.ir.arrays import tensor_array
from onnxforge.ir.dtypes import np_dtype_for
from onnxforge.runtime import fusion
from onnxforge.runtime.fusion import FusionContext, NodeInfo, StepSpec
from onnxforge.runtime.plan import _DISCARD, _FIRST_SLOT, _NONE, Plan, Step
from onnxforge.runtime.registry import REGISTRY, KernelDef, Registry, canonical_domain


def _static_shape(value: ir.Value) -> tuple[int, ...] | None:
    shape = value.shape
    if shape is None or not all(isinstance(dim, int) for dim in shape):
        return None
    return tuple(int(dim) for dim in shape)


def output_count(node: ir.Node) -> int:
    """The ``_num_outputs`` a kernel is told: the outputs the node lists. A BatchNormalization's listed outputs
    choose training mode below opset 14, and there trailing empty names are outputs not asked for (onnxruntime
    runs ``['Y', '', '', '', '']`` in inference mode); other ops count every listed output (Split's included)."""
    count = len(node.outputs)
    if node.op_type == "BatchNormalization":
        while count > 1 and not node.outputs[count - 1].name:
            count -= 1
    return count


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
        self.kernels: dict[tuple[str, str], KernelDef | None] = {}

    def _new_slot(self, value: ir.Value | None, initial: Any = None) -> int:
        slot = len(self.template)
        self.template.append(initial)
        if value is not None:
            self.slots[value] = slot
        return slot

    def _slot_for_input(self, value: ir.Value | None, reader: NodeInfo | str) -> int:
        if value is None:
            return _NONE
        slot = self.slots.get(value)
        if slot is not None:
            return slot
        if self.is_subgraph:
            slot = self._new_slot(value)
            self.captures.append((value, slot))
            return slot
        who = reader if isinstance(reader, str) else reader.describe()  # described only for the error
        raise InvalidGraph(f"{who} reads '{value.name}', which no node, input or initializer produces")

    def _output_slots(self, node: ir.Node) -> tuple[int, ...]:
        """New slots for the node's named outputs (``_new_slot`` inlined: it ran once per output)."""
        template, slots = self.template, self.slots
        out_slots = []
        for value in node.outputs:
            if value.name:
                slots[value] = len(template)
                out_slots.append(len(template))
                template.append(None)
            else:
                out_slots.append(_DISCARD)
        return tuple(out_slots)

    def _kernel_for(self, domain: str, op_type: str, opset: int) -> KernelDef | None:
        """The registry's kernel, resolved once per (domain, op) of this graph: the opset is the graph's."""
        key = (domain, op_type)
        try:
            return self.kernels[key]
        except KeyError:
            kdef = self.kernels[key] = self.builder.registry.resolve(domain, op_type, opset)
            return kdef

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
        domain = node.domain
        if domain:
            domain = canonical_domain(domain)
        op_type = node.op_type
        opset = self.builder.opsets.get(domain)
        name = node.name or f"{op_type}_{self.node_count}"
        if opset is None:
            raise InvalidGraph(
                f"node '{name}' ({op_type}) uses domain '{node.domain}', which the model does not import"
            )
        info = NodeInfo(name, op_type, domain, opset)
        kdef = self._kernel_for(domain, op_type, opset)
        if kdef is None:
            raise NotImplemented(
                f"Could not find an implementation for {op_type}({opset}) node with name '{name}' "
                f"in domain '{domain or 'ai.onnx'}' (opset {opset})"
            )
        inputs = list(node.inputs)
        while inputs and inputs[-1] is None:
            inputs.pop()
        slots = self.slots
        in_slots = [slots[value] if value in slots else self._slot_for_input(value, info) for value in inputs]
        if node.attributes.data or kdef.context or kdef.required:
            attrs, captured = self._bind_attributes(node, kdef, info)
        else:
            attrs, captured = {}, []
        if kdef.check is not None and not captured and not self.constant_slots.issuperset(in_slots):
            self._defer_prepare(kdef, info, attrs, in_slots, node)
            return
        call = self._make_call(kdef, attrs, in_slots)
        if captured:
            call = _with_outer(call, len(in_slots), captured)
            in_slots += [self._slot_for_input(value, info) for value in captured]
        out_slots = self._output_slots(node)
        if op_type == "Constant" and domain == "" and not in_slots:
            self._fold_constant(call, info, out_slots)
            return
        self.node_count += 1
        if (
            self.builder.optimize
            and in_slots
            and not captured
            and self.constant_slots.issuperset(in_slots)
            and fusion.foldable(op_type, domain, kdef)
            and self._try_fold(call, in_slots, out_slots)
        ):
            return
        self.specs.append(StepSpec(call, info, in_slots, out_slots, kdef, attrs))

    def _bind_attributes(self, node: ir.Node, kdef: KernelDef, info: NodeInfo) -> tuple[dict[str, Any], list[ir.Value]]:
        attrs: dict[str, Any] = {}
        captured: list[ir.Value] = []
        # The UserDict's own dict: its Mapping methods cost a Python call per item. A copy, as a TENSOR
        # attribute is replaced on the way.
        for attr_name, attr in list(node.attributes.data.items()):
            if attr_name not in kdef.attributes and not kdef.accepts_any_attribute:
                raise NotImplemented(
                    f"{info.describe()}: attribute '{attr_name}' is not supported by kernel {kdef.name}"
                )
            if attr.is_ref():
                raise InvalidGraph(
                    f"{info.describe()}: attribute '{attr_name}' refers to a function attribute outside a function"
                )
            attrs[attr_name] = self._attribute_value(attr, captured)
            if (
                attr.type == ir.AttributeType.TENSOR
                and (detached := _detached(attr.value, attrs[attr_name])) is not attr.value
            ):
                node.attributes[attr_name] = ir.AttrTensor(attr_name, detached, doc_string=attr.doc_string)
        if not kdef.required.issubset(attrs):
            missing = sorted(kdef.required - set(attrs))
            raise InvalidGraph(f"{info.describe()}: required attribute(s) {missing} missing")
        if kdef.context:
            self._bind_context(node, kdef, info, attrs)
        return attrs, captured

    def _bind_context(self, node: ir.Node, kdef: KernelDef, info: NodeInfo, attrs: dict[str, Any]) -> None:
        if "_num_outputs" in kdef.context:
            attrs["_num_outputs"] = output_count(node)
        if "_node" in kdef.context:
            attrs["_node"] = node
        if "_opset" in kdef.context:
            attrs["_opset"] = info.opset
        if "_output_dtypes" in kdef.context:
            attrs["_output_dtypes"] = tuple(
                np_dtype_for(value.dtype) if value.dtype is not None and value.dtype != ir.DataType.UNDEFINED else None
                for value in node.outputs
            )

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

    def _make_call(self, kdef: KernelDef, attrs: dict[str, Any], in_slots: list[int]) -> Callable[..., Any]:
        if kdef.prepare is None:
            return functools.partial(kdef.fn, **attrs) if attrs else kdef.fn
        return _prepared_call(kdef, attrs, self._constants(in_slots))

    def _constants(self, in_slots: list[int]) -> list[Any]:
        return [self.template[s] if s in self.constant_slots else None for s in in_slots]

    def _defer_prepare(
        self, kdef: KernelDef, info: NodeInfo, attrs: dict[str, Any], in_slots: list[int], node: ir.Node
    ) -> None:
        """A step whose ``prepare`` runs when a fusion or the plan first needs its call (see ``kernel``'s
        ``check``); its errors are raised here and now, in the node order, by ``check``."""
        constants = self._constants(in_slots)
        assert kdef.check is not None
        kdef.check(constants, **_plain(attrs))
        out_slots = self._output_slots(node)
        self.node_count += 1
        make_call = functools.partial(_prepared_call, kdef, attrs, constants)
        self.specs.append(StepSpec.deferred(make_call, info, in_slots, out_slots, kdef, attrs))

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


def _plain(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k != "_outer"}


def _prepared_call(kdef: KernelDef, attrs: dict[str, Any], constants: list[Any]) -> Callable[..., Any]:
    """``kdef.prepare``'s specialised call for these constant inputs, else the plain kernel with its attributes."""
    assert kdef.prepare is not None
    prepared = kdef.prepare(constants, **_plain(attrs))
    if prepared is not None:
        return prepared
    return functools.partial(kdef.fn, **attrs) if attrs else kdef.fn


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
