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

The two pointwise convs may have groups (ShuffleNet; see ``kernels/_grouped_layout.py``), and a channel
shuffle between the first one and the depthwise conv (Reshape to ``(N, g, M/g, H, W)``, Transpose
``[0, 2, 1, 3, 4]``, Reshape to ``(N, M, H, W)``, each read only by the next) is folded into the first conv:
with ``g`` its own group count it writes each group's outputs at stride ``g`` in the NHWC rows; with one
group the shuffle just permutes its weight rows. The three steps go, and the fused step names them. Their
constant shapes fix ``N, H, W``: the fused conv checks them, as the first Reshape would have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
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
from onnxforge.runtime.kernels._grouped_layout import grouped_pointwise_from_nhwc, grouped_pointwise_to_nhwc

Weights = tuple[np.ndarray, np.ndarray | None]


def channels_last_chains(specs: list[StepSpec], ctx: FusionContext) -> list[StepSpec]:
    readers = _readers(specs)
    producer = {slot: index for index, spec in enumerate(specs) for slot in spec.outs}
    claimed: set[int] = set()
    dropped: set[int] = set()
    for index, spec in enumerate(specs):
        depthwise = _depthwise(spec, ctx)
        if depthwise is None:
            continue
        shuffle = _channel_shuffle(spec.ins[0], specs, producer, readers, ctx)
        source = spec.ins[0] if shuffle is None else shuffle.source
        first = producer.get(source)
        last = _sole_reader(spec.outs[0], readers, ctx)
        if first is None or last is None or _sole_reader(spec.ins[0], readers, ctx) != index:
            continue
        if shuffle is not None and _sole_reader(source, readers, ctx) != shuffle.steps[0]:
            continue
        if claimed.intersection((first, index, last)):
            continue
        before, after = _pointwise(specs[first], ctx), _pointwise(specs[last], ctx)
        dense = None if before is not None or shuffle is not None else _dense(specs[first], ctx)
        channels = depthwise[0].shape[0]
        produced = before or (dense[:2] if dense is not None else None)
        if produced is None or after is None or produced[0].shape[0] != channels:
            continue
        if after[0].shape[1] * after[2] != channels:
            continue
        if specs[last].ins[0] != spec.outs[0] or specs[first].outs[0] != source:
            continue
        w, b, strides, begins, ends = depthwise
        if before is not None and (before[2] > 1 or shuffle is not None):
            first_call = _grouped_first(before, specs[first].activation, shuffle)
            if first_call is None:
                continue
            specs[first].call = _call(first_call)
            if shuffle is not None:
                specs[first].info = specs[first].info.merged(*(specs[step].info for step in shuffle.steps))
                specs[first].outs = specs[shuffle.steps[-1]].outs
                dropped.update(shuffle.steps)
            prepadded = False
        else:
            prepadded = before is not None and prepadded_fits(w.shape[3], strides[1])
            if prepadded:
                assert before is not None
                specs[first].call = _call(
                    pointwise_to_padded(*before[:2], specs[first].activation, begins, ends, strides[1])
                )
            elif before is not None:
                specs[first].call = _call(pointwise_to_nhwc(*before[:2], specs[first].activation))
            else:
                assert dense is not None
                specs[first].call = _call(conv_to_nhwc(*dense, specs[first].activation))
        spec.call = _call(depthwise_nhwc(w, b, strides, begins, ends, spec.activation, prepadded=prepadded))
        if after[2] > 1:
            specs[last].call = _call(grouped_pointwise_from_nhwc(*after[:2], specs[last].activation, after[2]))
        else:
            specs[last].call = _call(pointwise_from_nhwc(*after[:2], specs[last].activation))
        claimed.update((first, index, last))
    return [spec for index, spec in enumerate(specs) if index not in dropped] if dropped else specs


class _Shuffle:
    """A channel shuffle ``Reshape -> Transpose -> Reshape`` (three step indices) of ``source``: ``groups``
    blocks of channels interleaved; ``dims`` the ``(N, C, H, W)`` its constant shapes fix."""

    def __init__(self, source: int, steps: tuple[int, int, int], groups: int, dims: tuple[int, ...]) -> None:
        self.source, self.steps, self.groups, self.dims = source, steps, groups, dims


def _channel_shuffle(
    slot: int, specs: list[StepSpec], producer: dict[int, int], readers: dict[int, list[int]], ctx: FusionContext
) -> _Shuffle | None:
    back = producer.get(slot)
    if back is None or specs[back].op != "Reshape":
        return None
    middle = producer.get(specs[back].ins[0])
    if (
        middle is None
        or specs[middle].op != "Transpose"
        or list(specs[middle].attrs.get("perm") or []) != [0, 2, 1, 3, 4]
    ):
        return None
    front = producer.get(specs[middle].ins[0])
    if front is None or specs[front].op != "Reshape" or specs[front].attrs.get("allowzero", 0):
        return None
    if (
        _sole_reader(specs[front].outs[0], readers, ctx) != middle
        or _sole_reader(specs[middle].outs[0], readers, ctx) != back
    ):
        return None
    split_shape, merged_shape = (_shape_constant(specs[step], ctx) for step in (front, back))
    if split_shape is None or merged_shape is None or len(split_shape) != 5 or len(merged_shape) != 4:
        return None
    n, groups, per_group, h, w = split_shape
    if merged_shape != (n, groups * per_group, h, w):
        return None
    return _Shuffle(specs[front].ins[0], (front, middle, back), groups, merged_shape)


def _shape_constant(spec: StepSpec, ctx: FusionContext) -> tuple[int, ...] | None:
    shape = ctx.constant(spec.ins[1]) if len(spec.ins) == 2 else None
    if shape is None or shape.ndim != 1 or shape.dtype.kind not in "iu" or not (shape > 0).all():
        return None
    return tuple(int(d) for d in shape)


def _grouped_first(
    before: tuple[np.ndarray, np.ndarray | None, int], activation: Any, shuffle: _Shuffle | None
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The chain's first conv, grouped and/or folding a channel shuffle (None when the shuffle's blocks are not
    the conv's groups)."""
    w, b, group = before
    m = w.shape[0]
    if shuffle is None:
        return grouped_pointwise_to_nhwc(w, b, activation, group, shuffle=False)
    if shuffle.dims[1] != m or m % shuffle.groups:
        return None
    if group == 1:
        order = np.arange(m).reshape(shuffle.groups, m // shuffle.groups).T.reshape(m)
        conv = pointwise_to_nhwc(w[order], None if b is None else b[order], activation)
    elif shuffle.groups == group:
        conv = grouped_pointwise_to_nhwc(w, b, activation, group, shuffle=True)
    else:
        return None
    return _checked_dims(conv, shuffle.dims)


def _checked_dims(
    conv: Callable[[np.ndarray], np.ndarray], dims: tuple[int, ...]
) -> Callable[[np.ndarray], np.ndarray]:
    n, _, h, w = dims

    def conv_then_shuffle(x: np.ndarray) -> np.ndarray:
        if x.ndim == 4 and (x.shape[0], x.shape[2], x.shape[3]) != (n, h, w):
            raise InvalidArgument(
                f"Reshape (channel shuffle): the input (N, H, W) = {(x.shape[0], x.shape[2], x.shape[3])} does not "
                f"match the model's constant shape {list(dims)}"
            )
        return conv(x)

    return conv_then_shuffle


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


def _pointwise(spec: StepSpec, ctx: FusionContext) -> tuple[np.ndarray, np.ndarray | None, int] | None:
    """(W, B, groups) of a 1x1, stride-1, unpadded conv."""
    weights = _weights(spec, ctx)
    if weights is None or weights[0].shape[2:] != (1, 1):
        return None
    if _ints(spec, "strides", 1) != [1, 1] or any(_ints(spec, "pads", 0)):
        return None
    group = int(spec.attrs.get("group", 1))
    if group < 1 or weights[0].shape[0] % group:
        return None
    return (*weights, group)


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
