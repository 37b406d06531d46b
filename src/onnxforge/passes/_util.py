"""Helpers the passes share: reading constants and attributes, rewiring values, making initializers.

A value counts as constant when it carries a tensor (``const_value``: an initializer, or a value whose
producer is a ``Constant``) and it is not a graph input. Initializers that are also graph inputs (IR < 4
models, or a session's overridable initializers) can be fed at run time, so they are never constants here;
``InitializersAsConstantsPass`` removes them from the inputs first when the caller asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxforge.ir.arrays import tensor_array
from onnxforge.ir.dtypes import np_dtype_for
from onnxforge.passes._gates import nodes_of

# Node.meta key (not serialized): names of the original nodes a fused node stands for, in graph order.
ABSORBED = "onnxforge.absorbed_nodes"
# Slice ends at or beyond this are "to the end" whatever the dim is (exporters write INT32_MAX or INT64_MAX).
SLICE_TO_END = 2**31 - 1
_SUBGRAPH_KINDS = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)


def all_nodes(model: ir.Model) -> list[ir.Node]:
    """Every node of the main graph and of every subgraph, taken as a list so the caller may edit the graph.

    Same order as onnx-ir's ``RecursiveGraphIterator`` (a node, then its subgraphs' nodes), built without
    its generator per node, which made walking the model a large part of every pass."""
    return nodes_of(model.graph)


def alive(node: ir.Node) -> bool:
    return node.graph is not None


def onnx_opset(model: ir.Model, domain: str = "") -> int:
    return model.opset_imports.get(domain, model.opset_imports.get("ai.onnx", 1) if domain == "" else 1)


def is_onnx_op(node: ir.Node, *op_types: str) -> bool:
    return node.domain in ("", "ai.onnx") and node.op_type in op_types


def tensor_to_numpy(tensor: ir.TensorProtocol) -> np.ndarray:
    return tensor_array(tensor)  # decoded once per tensor (see onnxforge.ir.arrays)


def const_tensor(value: ir.Value | None) -> ir.TensorProtocol | None:
    if value is None or value.is_graph_input():
        return None
    if value.const_value is not None:
        return value.const_value
    producer = value.producer()
    if producer is None or not is_onnx_op(producer, "Constant"):
        return None
    try:
        return ir.convenience.get_const_tensor(value)
    except Exception:  # a malformed Constant is left for the engine to report
        return None


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's array when it is a constant (see the module docstring), else None."""
    tensor = const_tensor(value)
    if tensor is None:
        return None
    try:
        return tensor_to_numpy(tensor)
    except Exception:  # unreadable external data or an exotic type: not a usable constant
        return None


def const_ints(value: ir.Value | None) -> list[int] | None:
    array = const_array(value)
    if array is None or array.dtype.kind not in "iu":
        return None
    return [int(v) for v in array.ravel()]


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    """An attribute's Python value (lists for repeated fields), ``default`` when absent or a function reference."""
    found = node.attributes.get(name)
    if found is None or found.is_ref():
        return default
    value = found.value
    if found.type in (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS):
        return list(value)
    return value


def has_ref_attributes(node: ir.Node) -> bool:
    # ``Attributes`` is a UserDict: its ``data`` dict iterates without a Mapping lookup per attribute.
    return any(a.is_ref() for a in node.attributes.data.values())


def has_subgraphs(node: ir.Node) -> bool:
    return any(a.type in _SUBGRAPH_KINDS for a in node.attributes.data.values())


def static_dims(value: ir.Value | None) -> list[int] | None:
    """The shape as ints when every dim is known, else None."""
    if value is None or value.shape is None:
        return None
    dims = list(value.shape)
    return [int(d) for d in dims] if all(isinstance(d, int) for d in dims) else None


def rank(value: ir.Value | None) -> int | None:
    if value is None or value.shape is None:
        return None
    return len(value.shape)


def np_dtype(value: ir.Value | None) -> np.dtype | None:
    if value is None or value.dtype is None or value.dtype == ir.DataType.UNDEFINED:
        return None
    try:
        return np_dtype_for(value.dtype)
    except Exception:
        return None


def single_user(value: ir.Value) -> ir.Node | None:
    """The only node reading ``value`` (once), if ``value`` is not also a graph output."""
    uses = list(value.uses())
    if len(uses) != 1 or value.is_graph_output():
        return None
    return uses[0].node


class Names:
    """Every value name in a model, collected once per pass on the first request (most passes find nothing
    to rewrite and never ask), so new initializers get unique names cheaply."""

    def __init__(self, model: ir.Model) -> None:
        self._model = model
        self._taken: set[str] | None = None
        # base -> the next suffix to try: repeated bases ("const") would otherwise rescan from _1 each time.
        self._next: dict[str, int] = {}

    @property
    def taken(self) -> set[str]:
        if self._taken is None:
            graphs = [self._model.graph]
            nodes = nodes_of(self._model.graph, graphs=graphs)
            taken: set[str | None] = {value.name for node in nodes for value in node.outputs}
            for graph in graphs:
                taken.update(graph.initializers)
                taken.update([value.name for value in graph.inputs])
            taken.discard(None)
            taken.discard("")
            self._taken = taken  # type: ignore[assignment]
        return self._taken

    def fresh(self, base: str) -> str:
        taken = self.taken
        index = self._next.get(base, 0)
        name = f"{base}_{index}" if index else base
        while name in taken:
            index += 1
            name = f"{base}_{index}"
        self._next[base] = index + 1
        taken.add(name)
        return name


def numpy_tensor(array: np.ndarray, dtype: ir.DataType | None = None) -> ir.TensorProtocol:
    """An onnx-ir tensor over a C-contiguous copy-free view of ``array``.

    ``ir.Tensor`` directly for numeric arrays: the ``ir.tensor`` convenience dispatches through typing
    Protocol ``isinstance`` checks that cost ~0.1 ms per call, a third of constant folding's time.
    """
    array = np.require(array, requirements="C")
    if array.dtype.kind in "OSU":
        return ir.tensor(array, dtype=dtype)
    return ir.Tensor(array, dtype=dtype)


def make_initializer(
    graph: ir.Graph, array: np.ndarray, names: Names | None, base: str, like: ir.Value | None = None
) -> ir.Value:
    """A new initializer of ``graph`` holding ``array``, named after ``base`` (``names`` None: ``base``
    itself, a name the caller took from ``names``); ``like`` lends its element type when it matches."""
    dtype = like.dtype if like is not None and like.dtype not in (None, ir.DataType.UNDEFINED) else None
    if dtype is not None and np_dtype_for(dtype) != array.dtype:
        dtype = None
    tensor = numpy_tensor(array, dtype)
    name = base if names is None else names.fresh(base)
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(value)
    return value


def replace_value(old: ir.Value, new: ir.Value) -> bool:
    """Make every reader of ``old`` read ``new``; False (nothing changed) when a graph output would lose its name.

    A graph output keeps its name: ``new`` takes it over, which is only safe when ``new`` is a plain node
    output of the same graph (not an input, an initializer, another output, or an outer-scope value).
    onnx-ir's ``IdentityEliminationPass`` renames without the last two checks, which can rename an
    outer graph's value or duplicate a graph output, so the passes here use this instead.
    """
    if old is new:
        return False
    if not old.is_graph_output():
        old.replace_all_uses_with(new)
        return True
    producer, old_producer = new.producer(), old.producer()
    if (
        producer is None
        or old_producer is None
        or producer.graph is not old_producer.graph
        or new.is_graph_output()
        or new.is_graph_input()
        or new.is_initializer()
    ):
        return False
    name = old.name
    old.replace_all_uses_with(new, replace_graph_outputs=True)
    old.name = None
    new.name = name
    return True


def replace_with_constant(out: ir.Value, array: np.ndarray, names: Names) -> ir.Value:
    """Make every reader of node output ``out`` read a new initializer holding ``array``.

    The initializer takes over the output's name (so a graph's interface is unchanged); ``out`` is renamed
    and left for its node's removal.
    """
    producer = out.producer()
    assert producer is not None and producer.graph is not None
    graph = producer.graph
    dtype = out.dtype if np_dtype(out) == array.dtype else None
    tensor = numpy_tensor(array, dtype)
    const = ir.Value(shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    out.replace_all_uses_with(const, replace_graph_outputs=True)
    name = out.name or names.fresh("const")
    out.name = names.fresh(f"{name}_replaced")
    const.name = name
    graph.register_initializer(const)
    return const


def bypass(node: ir.Node, source: ir.Value) -> bool:
    """Remove a node whose first output equals ``source``; False when its output name cannot be kept."""
    if not replace_value(node.outputs[0], source):
        return False
    remove_if_dead(node)
    return True


def remove_if_dead(node: ir.Node) -> bool:
    if node.graph is None:
        return False
    if any(out.uses() or out.is_graph_output() for out in node.outputs):
        return False
    node.graph.remove(node, safe=True)
    return True


def rebuild(
    node: ir.Node,
    inputs: Sequence[ir.Value | None],
    *,
    before: ir.Node,
    replaces: ir.Value,
    op_type: str | None = None,
    attributes: dict[str, Any] | None = None,
    drop: Sequence[str] = (),
    absorbs: Sequence[ir.Node] = (),
) -> bool:
    """A copy of ``node`` (its attributes, with ``attributes`` overriding and ``drop`` removed) reading
    ``inputs``, inserted before ``before``, whose output replaces the value ``replaces``.

    The copy keeps ``node``'s name, and lists the names of the nodes it took over (``absorbs``, and what
    they had absorbed) in ``meta[ABSORBED]``, in memory only, so a profiler or an error message can still
    name the nodes of the user's graph. False, with the graph unchanged, when ``replaces`` is a graph
    output whose name cannot move.
    """
    overrides = attributes or {}
    attrs = [
        ir.Attr(a.name, a.type, a.value, doc_string=a.doc_string)
        for name, a in node.attributes.items()
        if name not in overrides and name not in drop
    ]
    attrs += [ir.convenience.convert_attribute(k, v) for k, v in overrides.items() if v is not None]
    copy = ir.Node(node.domain, op_type or node.op_type, list(inputs), attributes=attrs, num_outputs=1, name=node.name)
    absorbed = list(node.meta.get(ABSORBED, []))
    for other in absorbs:
        absorbed += [other.name or other.op_type, *other.meta.get(ABSORBED, [])]
    if absorbed:
        copy.meta[ABSORBED] = absorbed
    return install(copy, before=before, replaces=replaces)


def install(new: ir.Node, *, before: ir.Node, replaces: ir.Value) -> bool:
    """Insert single-output ``new`` before ``before`` and make it replace ``replaces``, taking its name and type.

    Taking the name matters beyond looks: onnx-ir would otherwise call the output ``val_N``, which exporters
    (torch.onnx's dynamo path) use too, so a fresh ``val_N`` could collide with a name elsewhere in the model.
    False, with the graph unchanged, when ``replaces`` is a graph output whose name cannot move.
    """
    out = new.outputs[0]
    out.type, out.shape = replaces.type, replaces.shape
    name = replaces.name
    if name:
        replaces.name = f"{name}__replaced"
        out.name = name
    graph = before.graph
    assert graph is not None
    graph.insert_before(before, new)
    if replace_value(replaces, out):
        # A graph output's name moves with it, and by now that was the temporary one: the output keeps the
        # user's name, or the optimizer would see a changed interface and drop every rewrite of the model.
        out.name = name
        return True
    graph.remove(new, safe=True)
    replaces.name = name
    return False


def channel_vector(array: np.ndarray, out_rank: int | None, channels: int | None, axis: int = 1) -> np.ndarray | None:
    """``array`` as a length-``channels`` vector when it broadcasts along ``axis`` only, without growing the output.

    A constant broadcast against a rank-``out_rank`` tensor changes nothing but channel ``axis`` when its rank
    is at most ``out_rank`` and every dim other than the one aligned with ``axis`` is 1.
    """
    if out_rank is None or channels is None or array.ndim > out_rank:
        return None
    shape = (1,) * (out_rank - array.ndim) + tuple(array.shape)
    if any(d != 1 for i, d in enumerate(shape) if i != axis):
        return None
    if shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(array.reshape(-1), (channels,)).copy()


def batchnorm_params(node: ir.Node) -> list[np.ndarray] | None:
    """``[scale, bias, mean, var]`` of an inference BatchNormalization with constant 1-D float parameters of
    one shape (no running statistics asked for, no ``training_mode``, ``spatial=1``); else None."""
    if not is_onnx_op(node, "BatchNormalization") or len(node.inputs) != 5:
        return None
    if any(out.name for out in node.outputs[1:]):
        # Statistics outputs listed, read or not: training mode below opset 14 (batch statistics, as the engine
        # and onnxruntime compute), and a graph onnx rejects from 14 on. Empty names are outputs not asked for.
        return None
    if attr(node, "training_mode", 0) or attr(node, "spatial", 1) != 1:
        return None
    params = [const_array(v) for v in node.inputs[1:]]
    if any(p is None or p.dtype.kind != "f" or p.ndim != 1 for p in params):
        return None
    if not (params[0].shape == params[1].shape == params[2].shape == params[3].shape):  # type: ignore[union-attr]
        return None
    return params  # type: ignore[return-value]


def batchnorm_affine(node: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """``(k, c)`` with ``BN(x) = k * x + c`` per channel, for an inference BatchNormalization with constant
    parameters (``k = scale / sqrt(var + eps)``, ``c = bias - k * mean``, in float64); else None."""
    params = batchnorm_params(node)
    if params is None:
        return None
    scale, bias, mean, var = (p.astype(np.float64) for p in params)
    k = scale / np.sqrt(var + float(attr(node, "epsilon", 1e-5)))
    return k, bias - k * mean
