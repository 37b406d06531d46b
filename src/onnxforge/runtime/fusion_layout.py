"""Channels-last chains: pointwise Conv -> depthwise Conv -> pointwise Conv runs NHWC in the middle.

Rule: when a depthwise conv (one 2-D filter per channel, multiplier 1, explicit pads, no dilation) reads the
output of a pointwise conv (1x1, stride 1, unpadded, one group) or of a dense conv (one group, explicit
pads, no dilation: MobileNet's 3x3 stem) that nobody else reads, and its own output is read only by a
pointwise conv, then

- the first conv writes NHWC (its GEMM just takes the transposed operands); a pointwise one writes it
  already zero-padded and split into the column phases the depthwise conv reads, so that the depthwise
  conv does not copy the wide expanded image once more to pad it,
- the depthwise conv reads and writes NHWC (see ``kernels/_conv_layout.py`` for why that is faster),
- the last pointwise conv reads NHWC and writes NCHW again.

Nothing else can see the two NHWC values (sole readers, not graph inputs or outputs), so the graph's
numbers are those of the NCHW plan up to float rounding. Activations fused onto the convs (Relu, Clip) are
elementwise and run unchanged on the NHWC arrays. This is MobileNet's inverted-residual block; its
depthwise convs are several times faster channels-last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge.runtime.fusion import FusionContext, StepSpec, _readers, _sole_reader
from onnxforge.runtime.fusion_pairs import _conv_weights
from onnxforge.runtime.kernels._conv_layout import (
    conv_to_nhwc,
    depthwise_nhwc,
    pointwise_from_nhwc,
    pointwise_to_nhwc,
    pointwise_to_padded,
    prepadded_fits,
)

Weights = tuple[np.ndarray, np.ndarray | None]


def channels_last_chains(specs: list[StepSpec], ctx: FusionContext) -> list[StepSpec]:
    readers = _readers(specs)
    producer = {slot: index for index, spec in enumerate(specs) for slot in spec.outs}
    claimed: set[int] = set()
    for index, spec in enumerate(specs):
        depthwise = _depthwise(spec, ctx)
        if depthwise is None:
            continue
        first = producer.get(spec.ins[0])
        last = _sole_reader(spec.outs[0], readers, ctx)
        if first is None or last is None or _sole_reader(spec.ins[0], readers, ctx) != index:
            continue
        if claimed.intersection((first, index, last)):
            continue
        before, after = _pointwise(specs[first], ctx), _pointwise(specs[last], ctx)
        dense = None if before is not None else _dense(specs[first], ctx)
        channels = depthwise[0].shape[0]
        produced = before or (dense[:2] if dense is not None else None)
        if produced is None or after is None or produced[0].shape[0] != channels or after[0].shape[1] != channels:
            continue
        if specs[last].ins[0] != spec.outs[0] or specs[first].outs[0] != spec.ins[0]:
            continue
        w, b, strides, begins, ends = depthwise
        prepadded = before is not None and prepadded_fits(w.shape[3], strides[1])
        if prepadded:
            assert before is not None
            specs[first].call = _call(pointwise_to_padded(*before, specs[first].activation, begins, ends, strides[1]))
        elif before is not None:
            specs[first].call = _call(pointwise_to_nhwc(*before, specs[first].activation))
        else:
            assert dense is not None
            specs[first].call = _call(conv_to_nhwc(*dense, specs[first].activation))
        spec.call = _call(depthwise_nhwc(w, b, strides, begins, ends, spec.activation, prepadded=prepadded))
        specs[last].call = _call(pointwise_from_nhwc(*after, specs[last].activation))
        claimed.update((first, index, last))
    return specs


def _call(conv: Callable[[np.ndarray], np.ndarray]) -> Callable[..., Any]:
    # The step keeps its (X, W, B) inputs; W, B and any fused activation are already inside ``conv``.
    return lambda x, *_: conv(x)


def _weights(spec: StepSpec, ctx: FusionContext) -> Weights | None:
    if spec.op != "Conv" or spec.kdef is None or spec.kdef.prepare is None:
        return None
    weights = spec.weights or _conv_weights(spec, ctx)
    if weights is None or weights[0].dtype != np.float32 or weights[0].ndim != 4:
        return None
    return weights


def _ints(spec: StepSpec, name: str, default: int) -> list[int]:
    value = spec.attrs.get(name)
    return [int(v) for v in value] if value else [default, default]


def _pointwise(spec: StepSpec, ctx: FusionContext) -> Weights | None:
    weights = _weights(spec, ctx)
    if weights is None or weights[0].shape[2:] != (1, 1) or int(spec.attrs.get("group", 1)) != 1:
        return None
    if _ints(spec, "strides", 1) != [1, 1] or any(_ints(spec, "pads", 0)):
        return None
    return weights


def _dense(
    spec: StepSpec, ctx: FusionContext
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """A one-group 2-D conv with explicit pads and no dilation (an im2col conv that can write NHWC)."""
    weights = _weights(spec, ctx)
    if weights is None or int(spec.attrs.get("group", 1)) != 1 or weights[0].shape[2:] == (1, 1):
        return None
    geometry = _explicit_geometry(spec)
    if geometry is None:
        return None
    return (*weights, *geometry)


def _explicit_geometry(spec: StepSpec) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """(strides, pad begins, pad ends) of a 2-D conv with explicit (or VALID) pads and no dilation."""
    if spec.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "", "VALID") or _ints(spec, "dilations", 1) != [1, 1]:
        return None
    pads = [0, 0, 0, 0] if spec.attrs.get("auto_pad") == "VALID" else (list(spec.attrs.get("pads") or [0, 0, 0, 0]))
    if len(pads) != 4:
        return None
    strides = _ints(spec, "strides", 1)
    return (strides[0], strides[1]), (int(pads[0]), int(pads[1])), (int(pads[2]), int(pads[3]))


def _depthwise(
    spec: StepSpec, ctx: FusionContext
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    weights = _weights(spec, ctx)
    if weights is None:
        return None
    w, b = weights
    if w.shape[1] != 1 or int(spec.attrs.get("group", 1)) != w.shape[0] or w.shape[0] < 2:
        return None
    geometry = _explicit_geometry(spec)
    if geometry is None:
        return None
    return (w, b, *geometry)
