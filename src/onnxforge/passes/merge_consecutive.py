"""Merging consecutive ops of one kind: ``op2(op1(x))`` becomes a single ``op(x)`` when ``op1``'s output has no
other reader.

- Transpose: ``Transpose(Transpose(x, p), q) = Transpose(x, r)`` with ``r[i] = p[q[i]]`` (dropped when
  ``r`` is the identity).
- Reshape: ``Reshape(Reshape(x, s1), s2) = Reshape(x, s2)`` when ``s2`` is constant and has no ``0``
  (a ``0`` copies a dim of the intermediate shape), or ``allowzero=1``.
- Squeeze/Unsqueeze: ``Unsqueeze(Squeeze(x, a), a) = x`` and ``Squeeze(Unsqueeze(x, a), a) = x``;
  two Unsqueezes (or two Squeezes) become one whose axes are found by replaying both on a list of
  labelled dims (needs ``x``'s rank when an axis is negative).
- Slice: two Slices over disjoint axes, all arguments constant, become one Slice over both.
- Cast: ``Cast(Cast(x, t1), t2) = Cast(x, t2)`` only when ``t1`` holds every value of ``x``'s type
  exactly (a widening cast), so the second cast sees the same numbers either way.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxforge.passes._util import (
    Names,
    alive,
    all_nodes,
    attr,
    const_ints,
    install,
    is_onnx_op,
    make_initializer,
    onnx_opset,
    rank,
    remove_if_dead,
    replace_value,
    single_user,
)

_D = ir.DataType
# Types each type converts into exactly (every value representable): the first cast of a pair must be one.
_WIDENS_TO: dict[ir.DataType, frozenset[ir.DataType]] = {
    _D.BOOL: frozenset(
        {
            _D.INT8,
            _D.UINT8,
            _D.INT16,
            _D.UINT16,
            _D.INT32,
            _D.UINT32,
            _D.INT64,
            _D.UINT64,
            _D.FLOAT16,
            _D.BFLOAT16,
            _D.FLOAT,
            _D.DOUBLE,
        }
    ),
    _D.INT8: frozenset({_D.INT16, _D.INT32, _D.INT64, _D.FLOAT16, _D.BFLOAT16, _D.FLOAT, _D.DOUBLE}),
    _D.UINT8: frozenset(
        {_D.INT16, _D.UINT16, _D.INT32, _D.UINT32, _D.INT64, _D.UINT64, _D.FLOAT16, _D.FLOAT, _D.DOUBLE}
    ),
    _D.INT16: frozenset({_D.INT32, _D.INT64, _D.FLOAT, _D.DOUBLE}),
    _D.UINT16: frozenset({_D.INT32, _D.UINT32, _D.INT64, _D.UINT64, _D.FLOAT, _D.DOUBLE}),
    _D.INT32: frozenset({_D.INT64, _D.DOUBLE}),
    _D.UINT32: frozenset({_D.INT64, _D.UINT64, _D.DOUBLE}),
    _D.FLOAT16: frozenset({_D.FLOAT, _D.DOUBLE}),
    _D.BFLOAT16: frozenset({_D.FLOAT, _D.DOUBLE}),
    _D.FLOAT: frozenset({_D.DOUBLE}),
}


def _axes(node: ir.Node) -> list[int] | None:
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        return const_ints(node.inputs[1])
    return attr(node, "axes")


def _replay(ops: list[tuple[str, list[int]]], in_rank: int) -> tuple[str, list[int]] | None:
    """Replay Squeeze/Unsqueeze steps on labelled dims; the single equivalent step, if there is one."""
    dims: list[object] = list(range(in_rank))
    for op, axes in ops:
        if op == "Unsqueeze":
            out_rank = len(dims) + len(axes)
            normal = sorted(a + out_rank if a < 0 else a for a in axes)
            if len(set(normal)) != len(normal) or any(a < 0 or a >= out_rank for a in normal):
                return None
            for a in normal:
                dims.insert(a, "new")
        else:
            normal = sorted({a + len(dims) if a < 0 else a for a in axes}, reverse=True)
            if any(a < 0 or a >= len(dims) for a in normal):
                return None
            for a in normal:
                dims.pop(a)
    originals = [d for d in dims if d != "new"]
    if originals == list(range(in_rank)):  # only new dims added
        return "Unsqueeze", [i for i, d in enumerate(dims) if d == "new"]
    if "new" not in dims:  # only original dims removed
        return "Squeeze", [i for i in range(in_rank) if i not in originals]
    return None


class MergeConsecutivePass(ir.passes.InPlacePass):
    """Merge Transpose, Reshape, Squeeze/Unsqueeze, Slice and (widening) Cast pairs into one node."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self._opset = onnx_opset(model)
        self._names = Names(model)
        merged = 0
        for node in all_nodes(model):
            if not alive(node) or node.domain not in ("", "ai.onnx") or not node.inputs or node.inputs[0] is None:
                continue
            first = node.inputs[0].producer()
            if first is None or not alive(first) or first.graph is not node.graph:
                continue
            if single_user(node.inputs[0]) is not node or len(first.outputs) != 1:
                continue
            handler = getattr(self, f"_merge_{node.op_type.lower()}", None)
            if handler is not None and handler(first, node):
                remove_if_dead(first)
                merged += 1
        return ir.passes.PassResult(model, modified=merged > 0)

    def _rewire(self, node: ir.Node, replacement: ir.Value) -> bool:
        if not replace_value(node.outputs[0], replacement):
            return False
        remove_if_dead(node)
        return True

    def _replace(
        self, node: ir.Node, op_type: str, inputs: list[ir.Value | None], attributes: dict[str, object]
    ) -> bool:
        merged = ir.node(op_type, inputs, attributes=attributes, name=node.name)
        if not install(merged, before=node, replaces=node.outputs[0]):
            return False
        remove_if_dead(node)
        return True

    def _merge_transpose(self, first: ir.Node, node: ir.Node) -> bool:
        if not is_onnx_op(first, "Transpose"):
            return False
        p, q = attr(first, "perm"), attr(node, "perm")
        if p is None or q is None or len(p) != len(q):
            return False
        combined = [p[i] for i in q]
        x = first.inputs[0]
        assert x is not None
        if combined == list(range(len(combined))):
            return self._rewire(node, x)
        return self._replace(node, "Transpose", [x], {"perm": combined})

    def _merge_reshape(self, first: ir.Node, node: ir.Node) -> bool:
        if not is_onnx_op(first, "Reshape") or len(node.inputs) < 2 or len(first.inputs) < 2:
            return False
        target = const_ints(node.inputs[1])
        if target is None or (0 in target and not attr(node, "allowzero", 0)):
            return False
        node.replace_input_with(0, first.inputs[0])
        return True

    def _merge_squeeze(self, first: ir.Node, node: ir.Node) -> bool:
        return self._merge_squeeze_pair(first, node)

    def _merge_unsqueeze(self, first: ir.Node, node: ir.Node) -> bool:
        return self._merge_squeeze_pair(first, node)

    def _merge_squeeze_pair(self, first: ir.Node, node: ir.Node) -> bool:
        if not is_onnx_op(first, "Squeeze", "Unsqueeze"):
            return False
        a1, a2 = _axes(first), _axes(node)
        x = first.inputs[0]
        if a1 is None or a2 is None or x is None:
            return False
        if first.op_type != node.op_type and sorted(a1) == sorted(a2) and all(a >= 0 for a in a1):
            return self._rewire(node, x)  # Unsqueeze undoes the Squeeze of the same axes, and vice versa
        in_rank = rank(x)
        if in_rank is None:
            return False
        single = _replay([(first.op_type, a1), (node.op_type, a2)], in_rank)
        if single is None:
            return False
        op_type, axes = single
        if not axes:
            return self._rewire(node, x)
        if self._opset >= 13:
            assert node.graph is not None
            axes_value = make_initializer(
                node.graph, np.array(axes, dtype=np.int64), self._names, f"{op_type.lower()}_axes"
            )
            return self._replace(node, op_type, [x, axes_value], {})
        return self._replace(node, op_type, [x], {"axes": axes})

    def _merge_slice(self, first: ir.Node, node: ir.Node) -> bool:
        if not is_onnx_op(first, "Slice") or self._opset < 10:
            return False
        args = [self._slice_args(first), self._slice_args(node)]
        if args[0] is None or args[1] is None:
            return False
        (s1, e1, a1, t1), (s2, e2, a2, t2) = args  # type: ignore[misc]
        if any(a < 0 for a in a1 + a2) or set(a1) & set(a2):
            return False
        graph = node.graph
        assert graph is not None
        inputs = [
            make_initializer(graph, np.array(values, dtype=np.int64), self._names, f"slice_{part}")
            for part, values in (("starts", s1 + s2), ("ends", e1 + e2), ("axes", a1 + a2), ("steps", t1 + t2))
        ]
        return self._replace(node, "Slice", [first.inputs[0], *inputs], {})

    @staticmethod
    def _slice_args(node: ir.Node) -> tuple[list[int], list[int], list[int], list[int]] | None:
        ins = list(node.inputs) + [None] * (5 - len(node.inputs))
        starts, ends = const_ints(ins[1]), const_ints(ins[2])
        if starts is None or ends is None:
            return None
        axes = const_ints(ins[3]) if ins[3] is not None else list(range(len(starts)))
        steps = const_ints(ins[4]) if ins[4] is not None else [1] * len(starts)
        if axes is None or steps is None:
            return None
        return starts, ends, axes, steps

    def _merge_cast(self, first: ir.Node, node: ir.Node) -> bool:
        if not is_onnx_op(first, "Cast"):
            return False
        x = first.inputs[0]
        if x is None or x.dtype is None:
            return False
        middle = attr(first, "to")
        if middle is None or ir.DataType(middle) not in _WIDENS_TO.get(x.dtype, frozenset()):
            return False
        node.replace_input_with(0, x)
        return True
