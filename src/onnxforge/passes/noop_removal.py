"""No-op removal: nodes whose output equals their data input are bypassed (``y = x``, node removed).

Each rule needs the element type or shape of ``x`` where stated (from shape inference) and is skipped
when that is unknown:

- ``Identity``; ``Dropout`` in inference (no ``training_mode`` or a constant false one, mask unused);
- ``Cast``/``CastLike`` to ``x``'s own type;
- ``Reshape`` to ``x``'s shape: the target has ``x``'s rank and each entry is ``x``'s static dim, ``0``
  (copy, without ``allowzero``) or the single ``-1``; or input and output shapes are equal and static;
- ``Transpose`` with ``perm = [0, 1, ..., r-1]`` (or no perm on rank <= 1);
- ``Pad`` with all pads zero; ``Slice`` with every step 1, start 0 and end past the (static) dim;
- ``Expand`` to a shape of ones no longer than ``x``'s rank, or to ``x``'s own static shape;
- ``Add``/``Sub`` of zeros and ``Mul``/``Div`` by ones (``Add``/``Mul`` on either side), only when the
  constant's broadcast leaves ``x``'s shape unchanged (its rank <= ``x``'s and every dim 1 or equal);
- ``Concat`` of a single input; ``Split`` into a single output; ``Squeeze``/``Unsqueeze`` with an empty
  axes list; ``Tile`` with all repeats 1.

A graph output keeps its name (see ``_util.replace_value``): when that is impossible the node stays.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxforge.passes._util import (
    SLICE_TO_END,
    alive,
    all_nodes,
    attr,
    bypass,
    const_array,
    const_ints,
    onnx_opset,
    rank,
    static_dims,
)

_NEUTRAL = {"Add": 0, "Sub": 0, "Mul": 1, "Div": 1}


def _broadcast_keeps_shape(x: ir.Value, constant: np.ndarray) -> bool:
    if x.shape is None or constant.ndim > len(x.shape):
        return False
    aligned = list(x.shape)[len(x.shape) - constant.ndim :]
    return all(c == 1 or (isinstance(d, int) and d == c) for c, d in zip(constant.shape, aligned))


class RemoveNoOpsPass(ir.passes.InPlacePass):
    """Bypass nodes that return their input unchanged."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        opset = onnx_opset(model)
        # id(constant array) -> (array, whether every element equals 0 / 1): graphs apply one shared constant
        # in many nodes (a scale, an epsilon), and comparing it elementwise cost more than the rest of the test.
        self._neutral_tests: dict[tuple[int, int], tuple[np.ndarray, bool]] = {}
        removed = 0
        for node in all_nodes(model):
            if not alive(node) or node.domain not in ("", "ai.onnx") or not node.inputs or not node.outputs:
                continue
            source = self._source(node, opset)
            if source is not None and bypass(node, source):
                removed += 1
        return ir.passes.PassResult(model, modified=removed > 0)

    def _source(self, node: ir.Node, opset: int) -> ir.Value | None:
        """The input the node's first output equals, or None when it is not a no-op."""
        op = node.op_type
        x = node.inputs[0]
        if x is None:
            return None
        out = node.outputs[0]
        if op in ("Add", "Mul", "Sub", "Div"):
            return self._neutral_operand(node)
        if any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
            return None  # extra outputs (Dropout's mask, Split's parts) are still needed
        if op == "Identity" or (op == "Concat" and len(node.inputs) == 1):
            return x
        if op == "Split":
            return x if len(node.outputs) == 1 else None
        if op == "Dropout":
            training = node.inputs[2] if len(node.inputs) > 2 else None
            if training is None:
                return x
            flag = const_array(training)
            return x if flag is not None and not bool(flag.ravel()[0]) else None
        if op == "Cast":
            return x if x.dtype is not None and attr(node, "to") == int(x.dtype) else None
        if op == "CastLike":
            like = node.inputs[1] if len(node.inputs) > 1 else None
            return x if like is not None and x.dtype is not None and like.dtype == x.dtype else None
        if op == "Transpose":
            perm = attr(node, "perm")
            r = rank(x)
            if perm is None:
                return x if r is not None and r <= 1 else None
            return x if perm == list(range(len(perm))) else None
        if op == "Reshape":
            return x if self._same_reshape(node, x, out) else None
        if op == "Pad":
            pads = const_ints(node.inputs[1]) if opset >= 11 and len(node.inputs) > 1 else attr(node, "pads")
            return x if pads is not None and all(p == 0 for p in pads) else None
        if op == "Slice":
            return x if self._full_slice(node, x, opset) else None
        if op == "Expand":
            shape = const_ints(node.inputs[1]) if len(node.inputs) > 1 else None
            r, dims = rank(x), static_dims(x)
            if shape is not None and r is not None and len(shape) <= r and all(s == 1 for s in shape):
                return x
            if shape is not None and dims is not None and static_dims(out) == dims:
                return x
            return None
        if op in ("Squeeze", "Unsqueeze"):
            axes = (
                const_ints(node.inputs[1])
                if len(node.inputs) > 1 and node.inputs[1] is not None
                else attr(node, "axes")
            )
            # Squeeze without axes drops every 1-dim, which is only a no-op on a shape with none.
            if op == "Squeeze" and axes is None:
                dims = static_dims(x)
                return x if dims is not None and 1 not in dims else None
            return x if axes == [] else None
        if op == "Tile":
            repeats = const_ints(node.inputs[1]) if len(node.inputs) > 1 else None
            return x if repeats is not None and all(r == 1 for r in repeats) else None
        return None

    def _is_neutral(self, constant: np.ndarray, neutral: int) -> bool:
        key = (id(constant), neutral)
        known = self._neutral_tests.get(key)
        if known is None:
            known = (constant, bool(np.all(constant == neutral)))  # the array is kept so its id stays its own
            self._neutral_tests[key] = known
        return known[1]

    def _neutral_operand(self, node: ir.Node) -> ir.Value | None:
        if len(node.inputs) != 2 or node.inputs[0] is None or node.inputs[1] is None:
            return None
        neutral = _NEUTRAL[node.op_type]
        a, b = node.inputs
        candidates = [(a, b)] + ([(b, a)] if node.op_type in ("Add", "Mul") else [])
        for x, c in candidates:
            constant = const_array(c)
            if (
                constant is None
                or constant.dtype.kind not in "biuf"
                or x.dtype is None
                or x.dtype != node.outputs[0].dtype
            ):
                continue
            if not self._is_neutral(constant, neutral):
                continue
            if _broadcast_keeps_shape(x, constant):
                return x
        return None

    @staticmethod
    def _same_reshape(node: ir.Node, x: ir.Value, out: ir.Value) -> bool:
        dims_in, dims_out = static_dims(x), static_dims(out)
        if dims_in is not None and dims_in == dims_out:
            return True
        target = const_ints(node.inputs[1]) if len(node.inputs) > 1 else attr(node, "shape")
        if target is None or x.shape is None or len(target) != len(x.shape) or target.count(-1) > 1:
            return False
        allowzero = attr(node, "allowzero", 0)
        for t, d in zip(target, x.shape):
            if t == -1 or (t == 0 and not allowzero):
                continue
            if not (isinstance(d, int) and d == t):
                return False
        return True

    @staticmethod
    def _full_slice(node: ir.Node, x: ir.Value, opset: int) -> bool:
        if opset >= 10:
            if len(node.inputs) < 3:
                return False
            starts, ends = const_ints(node.inputs[1]), const_ints(node.inputs[2])
            axes_in = node.inputs[3] if len(node.inputs) > 3 else None
            steps_in = node.inputs[4] if len(node.inputs) > 4 else None
            axes = const_ints(axes_in) if axes_in is not None else None
            steps = const_ints(steps_in) if steps_in is not None else None
            if (axes_in is not None and axes is None) or (steps_in is not None and steps is None):
                return False
        else:
            starts, ends, axes, steps = attr(node, "starts"), attr(node, "ends"), attr(node, "axes"), None
        if starts is None or ends is None:
            return False
        if axes is None:
            axes = list(range(len(starts)))
        if steps is not None and any(s != 1 for s in steps):
            return False
        r = rank(x)
        for axis, start, end in zip(axes, starts, ends):
            if start != 0:
                return False
            if end >= SLICE_TO_END:
                continue
            if r is None:
                return False
            dim = x.shape[axis + r if axis < 0 else axis] if -r <= axis < r else None
            if not (isinstance(dim, int) and end >= dim):
                return False
        return True
