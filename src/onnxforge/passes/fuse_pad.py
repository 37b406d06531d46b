"""Pad folded into the Conv or pooling op that reads it.

A constant-mode ``Pad`` of ``x`` (rank ``r``) by ``p = [b_0, ..., b_{r-1}, e_0, ..., e_{r-1}]`` that pads
only spatial dims (``b_0 = b_1 = e_0 = e_1 = 0``, all ``p >= 0``) followed by an op with explicit ``pads``
``q = [qb_2, ..., qe_{r-1}]`` equals that op with ``pads = q + p[spatial]``, provided the padding value
is what the op pads with itself:

- ``Conv`` pads with 0: the Pad value must be 0 (``auto_pad`` NOTSET);
- ``AveragePool`` counts padded zeros only with ``count_include_pad=1``: the Pad value must be 0, and
  the pool either has ``count_include_pad=1`` or no pads of its own (then it gets ``count_include_pad=1``);
  ``ceil_mode=0`` so no window runs past the padding;
- ``MaxPool`` pads with -inf: the Pad value must be -inf, and the pool's indices output unused.

Applies when the Pad's output has no other reader and its pads (and value) are constants.
"""

from __future__ import annotations

import math

import onnx_ir as ir

from onnxforge.passes._util import (
    alive,
    all_nodes,
    attr,
    const_array,
    const_ints,
    is_onnx_op,
    onnx_opset,
    rank,
    rebuild,
    remove_if_dead,
    single_user,
)


def _pad_spec(pad: ir.Node, opset: int) -> tuple[list[int], float] | None:
    """The full pads list and the padding value of a constant-mode Pad, or None."""
    if attr(pad, "mode", "constant") != "constant":
        return None
    if opset < 11:
        return attr(pad, "pads"), float(attr(pad, "value", 0.0))
    pads = const_ints(pad.inputs[1]) if len(pad.inputs) > 1 else None
    if pads is None:
        return None
    value = 0.0
    if len(pad.inputs) > 2 and pad.inputs[2] is not None:
        array = const_array(pad.inputs[2])
        if array is None or array.size != 1:
            return None
        value = float(array.ravel()[0])
    if len(pad.inputs) > 3 and pad.inputs[3] is not None:  # opset 18 axes: expand to every dim
        axes, r = const_ints(pad.inputs[3]), rank(pad.inputs[0])
        if axes is None or r is None:
            return None
        full = [0] * (2 * r)
        for i, axis in enumerate(axes):
            axis = axis + r if axis < 0 else axis
            full[axis], full[axis + r] = pads[i], pads[i + len(axes)]
        pads = full
    return pads, value


class FusePadIntoConvPoolPass(ir.passes.InPlacePass):
    """Move a spatial constant Pad into the pads of the Conv, AveragePool or MaxPool that reads it."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        opset = onnx_opset(model)
        fused = 0
        for pad in all_nodes(model):
            if not alive(pad) or not is_onnx_op(pad, "Pad") or pad.inputs[0] is None:
                continue
            consumer = single_user(pad.outputs[0])
            if consumer is None or consumer.inputs[0] is not pad.outputs[0]:
                continue
            if not is_onnx_op(consumer, "Conv", "AveragePool", "MaxPool"):
                continue
            spec = _pad_spec(pad, opset)
            if spec is None:
                continue
            pads, value = spec
            r = len(pads) // 2
            if r < 3 or len(pads) != 2 * r or any(p < 0 for p in pads) or pads[0] or pads[1] or pads[r] or pads[r + 1]:
                continue
            overrides = self._overrides(consumer, value)
            if overrides is None or attr(consumer, "auto_pad", "NOTSET") != "NOTSET":
                continue
            spatial = r - 2
            own = attr(consumer, "pads", [0] * (2 * spatial))
            if len(own) != 2 * spatial:
                continue
            begins = [own[i] + pads[2 + i] for i in range(spatial)]
            ends = [own[spatial + i] + pads[r + 2 + i] for i in range(spatial)]
            overrides["pads"] = begins + ends
            inputs = [pad.inputs[0], *consumer.inputs[1:]]
            if rebuild(
                consumer, inputs, before=consumer, replaces=consumer.outputs[0], attributes=overrides, absorbs=[pad]
            ):
                remove_if_dead(consumer)
                remove_if_dead(pad)
                fused += 1
        return ir.passes.PassResult(model, modified=fused > 0)

    @staticmethod
    def _overrides(consumer: ir.Node, value: float) -> dict[str, object] | None:
        if consumer.op_type == "Conv":
            return {} if value == 0.0 else None
        if len(consumer.outputs) > 1 and any(o.uses() or o.is_graph_output() for o in consumer.outputs[1:]):
            return None
        if consumer.op_type == "MaxPool":
            return {} if math.isinf(value) and value < 0 else None
        if value != 0.0 or attr(consumer, "ceil_mode", 0):
            return None
        if attr(consumer, "count_include_pad", 0):
            return {}
        own = attr(consumer, "pads", None)
        return {"count_include_pad": 1} if not own or not any(own) else None
