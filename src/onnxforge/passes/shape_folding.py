"""Shape-aware folding: shape queries answered from the static dims that shape inference found.

Rules (``x`` of shape ``[d0, ..., dr-1]`` where some ``di`` may be symbolic):

- ``Shape(x, start, end)`` becomes the constant ``[d_start, ..., d_end-1]`` when those dims are all static;
- ``Size(x)`` becomes ``prod(di)`` when every dim is static;
- ``Gather(Shape(x), i)`` becomes ``d_i`` (``Gather`` on axis 0, constant ``i``) when the gathered dims are
  static, even if other dims of ``x`` are symbolic (``batch``, ``seq``...);
- ``Slice(Shape(x), starts, ends, axes, steps)`` with constant arguments becomes the selected dims when
  they are static, likewise.

What follows (``Concat``/``Unsqueeze``/arithmetic of the new constants) is left to constant folding.
Shapes come from ``ShapeInferencePass`` run just before; a missing or symbolic dim blocks the rule.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxforge.passes._util import (
    Names,
    alive,
    all_nodes,
    attr,
    const_array,
    const_ints,
    is_onnx_op,
    remove_if_dead,
    replace_with_constant,
)


def _shape_dims(shape_node: ir.Node) -> list[int | None] | None:
    """The dims a Shape node reports (None where symbolic), honouring start/end (opset 15)."""
    source = shape_node.inputs[0]
    if source is None or source.shape is None:
        return None
    dims = [d if isinstance(d, int) else None for d in source.shape]
    count = len(dims)
    start = attr(shape_node, "start", 0)
    end = attr(shape_node, "end", count)
    start = min(max(start + count if start < 0 else start, 0), count)
    end = min(max(end + count if end < 0 else end, 0), count)
    return dims[start:end]


def _sliced(
    dims: list[int | None], starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None
) -> list[int | None] | None:
    if axes is not None and any(a not in (0, -1) for a in axes):
        return None
    if len(starts) != 1 or len(ends) != 1 or (steps is not None and len(steps) != 1):
        return None
    step = steps[0] if steps else 1
    if step == 0:
        return None
    # Python slicing clamps like ONNX Slice does, once INT64 extremes are brought into range.
    start = max(min(starts[0], len(dims) + 1), -len(dims) - 1)
    end = max(min(ends[0], len(dims) + 1), -len(dims) - 1)
    return dims[slice(start, end, step)]


class FoldShapesPass(ir.passes.InPlacePass):
    """Replace Shape/Size and Gather/Slice of a Shape by constants where the dims involved are static."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        names = Names(model)
        changed = 0
        for node in all_nodes(model):
            if not alive(node) or node.domain not in ("", "ai.onnx") or not node.outputs:
                continue
            result = self._fold(node)
            if result is None:
                continue
            replace_with_constant(node.outputs[0], result, names)
            remove_if_dead(node)
            changed += 1
        return ir.passes.PassResult(model, modified=changed > 0)

    def _fold(self, node: ir.Node) -> np.ndarray | None:
        if node.op_type == "Shape":
            dims = _shape_dims(node)
            if dims is None or any(d is None for d in dims):
                return None
            return np.array(dims, dtype=np.int64)
        if node.op_type == "Size":
            source = node.inputs[0]
            if source is None or source.shape is None or not all(isinstance(d, int) for d in source.shape):
                return None
            return np.array(int(np.prod([int(d) for d in source.shape], dtype=np.int64)), dtype=np.int64)
        if node.op_type not in ("Gather", "Slice") or node.inputs[0] is None:
            return None
        producer = node.inputs[0].producer()
        if producer is None or not is_onnx_op(producer, "Shape"):
            return None
        dims = _shape_dims(producer)
        if dims is None:
            return None
        if node.op_type == "Gather":
            return self._gather(node, dims)
        return self._slice(node, dims)

    @staticmethod
    def _gather(node: ir.Node, dims: list[int | None]) -> np.ndarray | None:
        if attr(node, "axis", 0) not in (0, -1) or len(node.inputs) < 2:
            return None
        indices = const_array(node.inputs[1])
        if indices is None or indices.dtype.kind not in "iu":
            return None
        count = len(dims)
        flat = [int(i) + count if int(i) < 0 else int(i) for i in indices.ravel()]
        if any(i < 0 or i >= count or dims[i] is None for i in flat):
            return None
        return np.array([dims[i] for i in flat], dtype=np.int64).reshape(indices.shape)

    @staticmethod
    def _slice(node: ir.Node, dims: list[int | None]) -> np.ndarray | None:
        if len(node.inputs) >= 3:  # opset 10+: arguments are inputs
            starts, ends = const_ints(node.inputs[1]), const_ints(node.inputs[2])
            axes = const_ints(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None else None
            steps = const_ints(node.inputs[4]) if len(node.inputs) > 4 and node.inputs[4] is not None else None
            if starts is None or ends is None:
                return None
            if len(node.inputs) > 3 and node.inputs[3] is not None and axes is None:
                return None
            if len(node.inputs) > 4 and node.inputs[4] is not None and steps is None:
                return None
        else:
            starts, ends, axes, steps = attr(node, "starts"), attr(node, "ends"), attr(node, "axes"), None
            if starts is None or ends is None:
                return None
        selected = _sliced(dims, starts, ends, axes, steps)
        if selected is None or any(d is None for d in selected):
            return None
        return np.array(selected, dtype=np.int64)
