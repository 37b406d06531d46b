"""Plan-time fusions of a producer with its sole consumer (see fusion.py for the rules every rewrite keeps):

- Conv then constant per-channel affine ops (inference BatchNormalization, Mul, Add), folded into the
  Conv's weights and bias, repeatedly (Conv-BN-Mul-Add chains);
- Conv, Add, Sum, BatchNormalization or MatMul then Relu or Clip, applied in place to the producer's result;
- the exact-GELU chain torch exports (Div by sqrt 2, Erf, Add 1, Mul, Mul by 0.5) as one Gelu step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge.runtime.fusion import (
    _BN_EPSILON,
    _NONE,
    _RELU_PRODUCERS,
    FusionContext,
    StepSpec,
    _is_fresh,
    _readers,
    _relu_into,
    _sole_reader,
)

# What fold_conv_affine (BatchNormalization, Mul, Add) and with_relu (Relu, Clip) merge into their producer.
_PAIR_CONSUMERS = frozenset({"BatchNormalization", "Mul", "Add", "Relu", "Clip"})


def fuse_pairs(specs: list[StepSpec], ctx: FusionContext) -> list[StepSpec]:
    """Merge consumers into their producer: Conv + per-channel affine ops (repeatedly), then + Relu."""
    readers = _readers(specs)
    dropped: set[int] = set()
    for index, spec in enumerate(specs):
        # Both rules start from a Conv or another Relu producer, and merge only the ops below.
        if index in dropped or len(spec.outs) != 1 or spec.op not in _RELU_PRODUCERS:
            continue
        rules = [fold_conv_affine, with_relu] if spec.op == "Conv" else [with_relu]  # the fold takes only Convs
        while rules:
            nxt = _sole_reader(spec.outs[0], readers, ctx)
            if nxt is None or nxt in dropped or specs[nxt].op not in _PAIR_CONSUMERS:
                break
            merged = rules[0](spec, specs[nxt], ctx)
            if merged is None:
                rules.pop(0)  # this rule is done; a Relu comes last
                continue
            spec = specs[index] = merged
            dropped.add(nxt)
    return [spec for index, spec in enumerate(specs) if index not in dropped]


def fold_conv_affine(conv: StepSpec, nxt: StepSpec, ctx: FusionContext) -> StepSpec | None:
    """Conv then a constant per-channel affine map (inference BatchNormalization, Mul, Add): one Conv.

    ``W[m] * s[m]`` and ``B[m] * s[m] + t[m]``; repeated, this folds Conv-BN-Mul-Add chains (Inception).
    """
    if conv.op != "Conv" or conv.kdef is None or conv.kdef.prepare is None or len(nxt.outs) != 1:
        return None
    weights = conv.weights or _conv_weights(conv, ctx)
    if weights is None:
        return None
    w, b = weights
    affine = _channel_affine(nxt, conv.outs[0], w, ctx)
    if affine is None:
        return None
    scale, shift = affine
    new_w = w * scale.reshape(-1, *(1,) * (w.ndim - 1))
    new_b = b * scale + shift
    packed = conv.kdef.prepare([None, new_w, new_b], **conv.attrs)
    if packed is None:
        return None
    # The packed call ignores its W and B arguments, so the folded arrays need no slot of their own.
    fused = StepSpec(packed, conv.info.merged(nxt.info), [conv.ins[0], _NONE, _NONE], nxt.outs, conv.kdef, conv.attrs)
    fused.weights = (new_w, new_b)
    return fused


def _conv_weights(conv: StepSpec, ctx: FusionContext) -> tuple[np.ndarray, np.ndarray] | None:
    w = ctx.constant(conv.ins[1]) if len(conv.ins) > 1 else None
    has_bias = len(conv.ins) > 2 and conv.ins[2] != _NONE
    b = ctx.constant(conv.ins[2]) if has_bias else None
    if w is None or w.dtype not in (np.float32, np.float64) or w.ndim < 3 or (has_bias and b is None):
        return None
    if b is None:
        return w, np.zeros(w.shape[0], w.dtype)
    return (w, b.astype(w.dtype)) if b.shape == (w.shape[0],) else None


def _channel_affine(spec: StepSpec, x: int, w: np.ndarray, ctx: FusionContext) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) per output channel when ``spec`` maps its input ``x`` (a Conv output) affinely."""
    m, dtype = w.shape[0], w.dtype
    if spec.op == "BatchNormalization":
        if len(spec.ins) != 5 or spec.ins[0] != x or spec.attrs.get("training_mode", 0):
            return None
        params = [ctx.constant(slot) for slot in spec.ins[1:]]
        if any(p is None or p.shape != (m,) for p in params):
            return None
        scale, shift, mean, var = (p.astype(dtype) for p in params if p is not None)
        a = scale / np.sqrt(var + dtype.type(spec.attrs.get("epsilon", _BN_EPSILON)))
        return a, shift - mean * a
    if spec.op not in ("Mul", "Add"):
        return None
    other = _other_input(spec, x)
    c = ctx.constant(other) if other is not None else None
    if c is None or c.dtype != dtype or c.ndim > w.ndim:
        return None
    shape = (1,) * (w.ndim - c.ndim) + c.shape  # aligned with the output's (N, M, *spatial)
    if shape[0] != 1 or shape[1] not in (1, m) or any(d != 1 for d in shape[2:]):
        return None
    vector = np.broadcast_to(c.reshape(-1), (m,)).astype(dtype)
    if spec.op == "Mul":
        return vector, np.zeros(m, dtype)
    return np.ones(m, dtype), vector


def with_relu(spec: StepSpec, act: StepSpec, ctx: FusionContext) -> StepSpec | None:
    """A fresh-output op then Relu, or Clip with constant bounds (ReLU6): the activation runs in place on
    the op's result, in the same step."""
    if spec.op not in _RELU_PRODUCERS or not act.ins or act.ins[0] != spec.outs[0] or len(act.outs) != 1:
        return None
    if not _is_fresh(spec):
        return None
    if act.op == "Relu" and len(act.ins) == 1:
        activation = _relu_into
    elif act.op == "Clip":
        bounds = _clip_bounds(act, ctx)
        if bounds is None:
            return None
        activation = _clip_into(*bounds)
    else:
        return None
    # Deferred like the op's own call (a Conv's packing): a channels-last chain may replace both unread.
    fused = StepSpec.deferred(
        lambda: _then(spec.call, activation), spec.info.merged(act.info), spec.ins, act.outs, spec.kdef, spec.attrs
    )
    fused.weights, fused.activation = spec.weights, activation
    return fused


def _then(call: Callable[..., Any], activation: Callable[[np.ndarray], np.ndarray]) -> Callable[..., Any]:
    def then_activation(*args: Any) -> Any:
        return activation(call(*args))

    return then_activation


def _clip_bounds(clip: StepSpec, ctx: FusionContext) -> tuple[float | None, float | None] | None:
    """Clip's (min, max) when both are known at build time (None: that side is open), else None."""
    if clip.kdef is not None and clip.kdef.since < 11:
        return float(clip.attrs.get("min", -3.4028234663852886e38)), float(clip.attrs.get("max", 3.4028234663852886e38))
    bounds: list[float | None] = []
    for position in (1, 2):
        slot = clip.ins[position] if len(clip.ins) > position else _NONE
        if slot == _NONE:
            bounds.append(None)
            continue
        value = _scalar(ctx, slot)
        if value is None:
            return None
        bounds.append(value)
    return bounds[0], bounds[1]


def _clip_into(low: float | None, high: float | None) -> Callable[[np.ndarray], np.ndarray]:
    lo = np.float32(-np.inf if low is None else low)
    hi = np.float32(np.inf if high is None else high)

    def clip_in_place(x: np.ndarray) -> np.ndarray:
        if type(x) is not np.ndarray or x.dtype != np.float32 or not x.flags.writeable:
            return np.clip(x, low, high).astype(x.dtype, copy=False)
        if lo > hi:  # the spec: every value becomes max
            x.fill(hi)
            return x
        return np.clip(x, lo, hi, out=x)

    return clip_in_place


def _scalar(ctx: FusionContext, slot: int) -> float | None:
    value = ctx.constant(slot)
    return float(value.reshape(())) if value is not None and value.size == 1 and value.dtype == np.float32 else None


def _other_input(spec: StepSpec, slot: int) -> int | None:
    """The input of a binary step that is not ``slot`` (None unless ``slot`` is exactly one of the two)."""
    if len(spec.ins) != 2 or spec.ins.count(slot) != 1:
        return None
    return spec.ins[1] if spec.ins[0] == slot else spec.ins[0]


def fuse_gelu(specs: list[StepSpec], ctx: FusionContext) -> list[StepSpec]:
    """``x * 0.5 * (1 + Erf(x / sqrt2))`` (as exporters spell exact GELU) becomes one float32 GELU step."""
    from onnxforge.runtime.kernels.activation import Gelu  # noqa: PLC0415 - kernels import this package

    readers = _readers(specs)
    dropped: set[int] = set()
    for erf in specs:
        if erf.op != "Erf" or len(erf.ins) != 1:
            continue
        chain = _gelu_chain(specs, readers, ctx, erf)
        if chain is None or dropped.intersection(chain[1]):
            continue
        x, members = chain
        last = specs[members[-1]]
        info = specs[members[0]].info
        for member in members[1:]:
            info = info.merged(specs[member].info)
        specs[members[-1]] = StepSpec(Gelu, info, [x], last.outs, last.kdef, last.attrs)
        dropped.update(members[:-1])
    return [spec for index, spec in enumerate(specs) if index not in dropped]


def _gelu_chain(
    specs: list[StepSpec], readers: dict[int, list[int]], ctx: FusionContext, erf: StepSpec
) -> tuple[int, list[int]] | None:
    """(x's slot, indices of Div, Erf, Add, Mul, Mul in order) when ``erf`` is the core of an exact GELU."""
    producer = {slot: i for i, spec in enumerate(specs) for slot in spec.outs}
    div_index = producer.get(erf.ins[0])
    if div_index is None or _sole_reader(erf.ins[0], readers, ctx) is None:
        return None
    div = specs[div_index]
    if div.op != "Div" or len(div.ins) != 2 or not np.isclose(_scalar(ctx, div.ins[1]) or 0.0, np.sqrt(2), rtol=1e-6):
        return None
    x = div.ins[0]
    members = [div_index, producer[erf.outs[0]]]
    plus_one = _sole_reader(erf.outs[0], readers, ctx)
    if plus_one is None or specs[plus_one].op != "Add":
        return None
    one = _other_input(specs[plus_one], erf.outs[0])
    if one is None or _scalar(ctx, one) != 1.0:
        return None
    members.append(plus_one)
    # Then x * that * 0.5, in either order of the two multiplications.
    current = specs[plus_one].outs[0]
    found_x, found_half = False, False
    for _ in range(2):
        nxt = _sole_reader(current, readers, ctx)
        if nxt is None or specs[nxt].op != "Mul":
            return None
        other = _other_input(specs[nxt], current)
        if other == x and not found_x:
            found_x = True
        elif other is not None and not found_half and _scalar(ctx, other) == 0.5:
            found_half = True
        else:
            return None
        members.append(nxt)
        current = specs[nxt].outs[0]
    return x, members
