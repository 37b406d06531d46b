"""Plan-time fusion of elementwise chains against constants into one step.

Rule: a step whose output is a fresh buffer that only the next step reads (``s0``), followed by steps
``s1 .. sn`` (n >= 2) that are each ``Add``/``Sub``/``Mul``/``Div`` of the previous result with a constant of
one float dtype, or ``Relu`` of it, becomes one step. It runs ``s0`` and then every ``si`` as a ufunc writing
into ``s0``'s buffer (``np.add(buf, c, out=buf)``), which gives bit-identical numbers to the unfused
steps: each ufunc computes the same float32 (or float64) values, only where they are stored changes.

Why: each step costs the plan's loop a few hundred nanoseconds on top of its ufunc (argument gathering,
the in-place wrapper's checks, storing and freeing slots). In a chain these checks hold for the whole chain
once the first buffer passes them: it is a writable ndarray of the constants' dtype, and every constant
broadcasts into its shape (the accepted shapes are remembered). A buffer that fails them runs the original
steps one by one, so behaviour never differs from the unfused plan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge.runtime.fusion import (
    _INPLACE_BINARY,
    FusionContext,
    StepSpec,
    _is_fresh,
    _readers,
)

_COMMUTATIVE = (np.add, np.multiply, np.maximum)
_MIN_CHAIN = 2  # in-place links after the head; one link saves too little to be worth a fused step

# One link: the ufunc, the constant (None for Relu), and whether the running value is the ufunc's first operand.
Link = tuple[Any, "np.ndarray | None", bool]


def fuse_elementwise_chains(specs: list[StepSpec], ctx: FusionContext) -> list[StepSpec]:
    """``specs`` with every qualifying chain (see the module docstring) replaced by one step at its head."""
    readers = _readers(specs)
    dropped: set[int] = set()
    replaced: dict[int, StepSpec] = {}
    for index, head in enumerate(specs):
        if index in dropped or len(head.outs) != 1 or not _is_fresh(head):
            continue
        members, links, dtype = _chain_from(index, specs, readers, ctx)
        if len(links) < _MIN_CHAIN or dtype is None:
            continue
        info = head.info.merged(*(specs[member].info for member in members))
        steps = [head.call] + [specs[member].call for member in members]
        last = specs[members[-1]]
        replaced[index] = StepSpec(
            _chain_call(steps, links, dtype), info, list(head.ins), last.outs, head.kdef, head.attrs
        )
        dropped.update(members)
    return [replaced.get(index, spec) for index, spec in enumerate(specs) if index not in dropped]


def _chain_from(
    head: int, specs: list[StepSpec], readers: dict[int, list[int]], ctx: FusionContext
) -> tuple[list[int], list[Link], np.dtype | None]:
    """The indices of the links after ``head``, the links, and their common constant dtype."""
    members: list[int] = []
    links: list[Link] = []
    dtype: np.dtype | None = None
    current = specs[head].outs[0]
    protected = ctx.protected
    while True:
        users = readers.get(current)  # _sole_reader inlined: one call per link of a long chain
        if users is None or len(users) != 1 or current in protected or users[0] <= head:
            break
        nxt = users[0]
        link = _link(specs[nxt], current, ctx)
        if link is None:
            break
        constant = link[1]
        if constant is not None:
            if dtype is None:
                dtype = constant.dtype
            elif constant.dtype != dtype:
                break
        members.append(nxt)
        links.append(link)
        current = specs[nxt].outs[0]
    # Relu-only chains have no constant to fix the dtype: leave them to the op+Relu fusion.
    return members, links, dtype


def _link(spec: StepSpec, running: int, ctx: FusionContext) -> Link | None:
    kdef = spec.kdef
    if len(spec.outs) != 1 or kdef is None or spec.info.fused:  # a fused step does more than its op
        return None
    op, ins = spec.op, spec.ins
    if op == "Relu":
        return (np.maximum, None, True) if ins == [running] else None
    ufunc = _INPLACE_BINARY.get(op)
    if ufunc is None or op == "Sum" or kdef.since < 7 or len(ins) != 2:
        return None
    first = ins[0] == running
    if first == (ins[1] == running):  # the running value must be exactly one of the operands
        return None
    constant = ctx.constant(ins[1] if first else ins[0])
    if constant is None or constant.dtype.kind != "f":
        return None
    return ufunc, constant, first


def _chain_call(steps: list[Callable[..., Any]], links: list[Link], dtype: np.dtype) -> Callable[..., Any]:
    head, rest = steps[0], steps[1:]
    constant_shapes = [c.shape for _, c, _ in links if c is not None]
    zero = dtype.type(0)
    accepted: set[tuple[int, ...]] = set()
    # The fast loop's links. Add and Mul take the running value first whichever side the node had it on
    # (IEEE addition and multiplication commute, NaNs included), so most chains need no order flag. A
    # one-element constant becomes 0-d: on a buffer it cannot grow (see fits) the values are the same, and
    # NumPy broadcasts a 0-d operand in ~0.3 us against ~0.75 us for a shape-(1,) one. ``out`` is passed
    # positionally, ~30 ns cheaper than the keyword. 1,000-link chain of [16] floats: ~0.1 us less per link.
    bound = [
        (ufunc, zero if c is None else (c.reshape(()) if c.size == 1 else c), first or ufunc in _COMMUTATIVE)
        for ufunc, c, first in links
    ]
    running_first = [(ufunc, operand) for ufunc, operand, first in bound if first]
    every_link_first = len(running_first) == len(bound)

    def fits(buffer: Any) -> bool:
        if type(buffer) is not np.ndarray or buffer.dtype != dtype or not buffer.flags.writeable:
            return False
        shape = buffer.shape
        if shape in accepted:
            return True
        try:
            ok = np.broadcast_shapes(shape, *constant_shapes) == shape
        except ValueError:
            ok = False
        if ok:
            accepted.add(shape)
        return ok

    def elementwise_chain(*args: Any) -> Any:
        buffer = head(*args)
        if fits(buffer):
            if every_link_first:
                for ufunc, operand in running_first:
                    ufunc(buffer, operand, buffer)
                return buffer
            for ufunc, operand, first in bound:
                if first:
                    ufunc(buffer, operand, buffer)
                else:
                    ufunc(operand, buffer, buffer)
            return buffer
        for step, (_, constant, first) in zip(rest, links):
            if constant is None:
                buffer = step(buffer)
            else:
                buffer = step(buffer, constant) if first else step(constant, buffer)
        return buffer

    return elementwise_chain
