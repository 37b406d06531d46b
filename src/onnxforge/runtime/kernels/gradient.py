"""Gradient (ai.onnx.preview.training): reverse-mode differentiation of part of the enclosing graph.

``Gradient<xs, y, zs>(x_1..x_n, z_1..z_m)`` returns ``d sum(y) / d x_i`` for each name in ``xs``, where ``y`` is
computed by the enclosing graph's nodes from the tensors named in ``xs`` and ``zs`` (plus initializers and
Constant nodes). The names in ``xs``/``zs`` are leaves even if a node produces them, and the node's inputs are
the values the derivative is taken at; for a non-scalar ``y`` the gradient is that of the sum of its elements
(i.e. the backward pass is seeded with ones).

At plan-build time the nodes between the leaves and ``y`` are collected into a :class:`GradientProgram`; each
run replays them forward with NumPy (keeping every intermediate), then walks them backwards accumulating
``dL/dv`` with the chain rule. The local derivatives (``g`` the incoming gradient, ``o`` the node's output):

- ``Add``: ``g, g``; ``Sub``: ``g, -g``; ``Mul``: ``g*b, g*a``; ``Div``: ``g/b, -g*a/b**2``;
- ``MatMul``: ``g @ b^T, a^T @ g`` (1-D operands promoted as in ``np.matmul``);
- ``Neg``: ``-g``; ``Identity``: ``g``; ``Relu``: ``g * (a > 0)``; ``Sigmoid``: ``g*o*(1-o)``;
  ``Tanh``: ``g*(1-o**2)``; ``Exp``: ``g*o``; ``Log``: ``g/a``; ``Sqrt``: ``g/(2*o)``.

Broadcast operands get their gradient summed back to their own shape. A leaf ``y`` does not depend on gets a
zero gradient. Other ops raise ``NotImplemented`` when the program is built.

The kernel needs the graph around the node, which reaches it through the ``_node`` build-time context
parameter (the onnx-ir node). Until the plan provides that parameter, the op is registered as a kernel that
refuses to run and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument, InvalidGraph, NotImplemented
from onnxforge.runtime.registry import CONTEXT_PARAMS, kernel

DOMAIN = "ai.onnx.preview.training"

Array = np.ndarray
Backward = Callable[[list[Array], Array, Array], list[Array]]


def unbroadcast(grad: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``grad`` over the axes broadcasting added or stretched, so it has ``shape``."""
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def _matmul_backward(inputs: list[Array], _out: Array, g: Array) -> list[Array]:
    a, b = inputs
    a2 = a[np.newaxis, :] if a.ndim == 1 else a
    b2 = b[:, np.newaxis] if b.ndim == 1 else b
    g2 = g.reshape(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1]))
    da = np.matmul(g2, np.swapaxes(b2, -1, -2))
    db = np.matmul(np.swapaxes(a2, -1, -2), g2)
    return [unbroadcast(da, a2.shape).reshape(a.shape), unbroadcast(db, b2.shape).reshape(b.shape)]


# op -> (forward, backward). Backward gets the inputs, the output and the output's gradient.
_OPS: dict[str, tuple[Callable[..., Array], Backward]] = {
    "Add": (np.add, lambda i, o, g: [g, g]),
    "Sub": (np.subtract, lambda i, o, g: [g, -g]),
    "Mul": (np.multiply, lambda i, o, g: [g * i[1], g * i[0]]),
    "Div": (np.divide, lambda i, o, g: [g / i[1], -g * i[0] / (i[1] * i[1])]),
    "MatMul": (np.matmul, _matmul_backward),
    "Neg": (np.negative, lambda i, o, g: [-g]),
    "Identity": (lambda a: a, lambda i, o, g: [g]),
    "Relu": (lambda a: np.maximum(a, np.zeros((), a.dtype)), lambda i, o, g: [g * (i[0] > 0)]),
    "Sigmoid": (lambda a: 1 / (1 + np.exp(-a)), lambda i, o, g: [g * o * (1 - o)]),
    "Tanh": (np.tanh, lambda i, o, g: [g * (1 - o * o)]),
    "Exp": (np.exp, lambda i, o, g: [g * o]),
    "Log": (np.log, lambda i, o, g: [g / i[0]]),
    "Sqrt": (np.sqrt, lambda i, o, g: [g / (2 * o)]),
}


@dataclass(frozen=True)
class _Step:
    op_type: str
    inputs: tuple[str, ...]
    output: str


class GradientProgram:
    """The forward steps from the leaves to ``y`` and their reverse-mode derivative."""

    def __init__(
        self, steps: Sequence[_Step], xs: Sequence[str], zs: Sequence[str], y: str, constants: dict[str, Array]
    ) -> None:
        self.steps, self.xs, self.zs, self.y, self.constants = list(steps), list(xs), list(zs), y, constants

    @classmethod
    def from_node(cls, node: Any, xs: Sequence[str], y: str, zs: Sequence[str]) -> GradientProgram:
        """Collect the nodes of ``node``'s graph (onnx-ir) that compute ``y`` from the leaves ``xs + zs``."""
        leaves = set(xs) | set(zs)
        if len(leaves) != len(xs) + len(zs):
            raise InvalidGraph(f"Gradient: xs {list(xs)} and zs {list(zs)} must name distinct tensors")
        graph = node.graph
        producers = {out.name: n for n in graph for out in n.outputs if out.name}
        initializers = {name: v.const_value for name, v in graph.initializers.items() if v.const_value is not None}
        steps: list[_Step] = []
        constants: dict[str, Array] = {}
        done: set[str] = set(leaves)

        def visit(name: str) -> None:  # depth-first, so every step comes after the steps it reads
            if name in done:
                return
            done.add(name)
            producer = producers.get(name)
            if producer is None:
                if name in initializers:
                    constants[name] = initializers[name].numpy()
                    return
                raise InvalidGraph(f"Gradient: y '{y}' depends on '{name}', which is in neither xs nor zs")
            if producer is node:
                raise InvalidGraph(f"Gradient: y '{y}' depends on the Gradient node's own output '{name}'")
            if producer.op_type == "Constant" and producer.domain in ("", "ai.onnx"):
                constants[name] = _constant_value(producer)
                return
            if producer.domain not in ("", "ai.onnx") or producer.op_type not in _OPS or len(producer.outputs) != 1:
                raise NotImplemented(
                    f"Gradient: cannot differentiate {producer.domain or 'ai.onnx'}::{producer.op_type} "
                    f"(node '{producer.name}'); supported: {sorted(_OPS)}"
                )
            names = tuple(v.name if v is not None else "" for v in producer.inputs)
            for input_name in names:
                visit(input_name)
            steps.append(_Step(producer.op_type, names, name))

        visit(y)
        return cls(steps, xs, zs, y, constants)

    def __call__(self, *inputs: Array) -> tuple[Array, ...]:
        if len(inputs) != len(self.xs) + len(self.zs):
            raise InvalidArgument(
                f"Gradient: expected {len(self.xs) + len(self.zs)} inputs (xs then zs), got {len(inputs)}"
            )
        values: dict[str, Array] = dict(self.constants)
        values.update(zip(self.xs + self.zs, (np.asarray(v) for v in inputs)))
        for step in self.steps:
            forward = _OPS[step.op_type][0]
            values[step.output] = np.asarray(forward(*(values[name] for name in step.inputs)))
        out = values[self.y]
        grads: dict[str, Array] = {self.y: np.ones_like(out)}
        for step in reversed(self.steps):
            g = grads.pop(step.output, None)
            if g is None:  # y does not depend on this step's output
                continue
            args = [values[name] for name in step.inputs]
            for name, arg, local in zip(step.inputs, args, _OPS[step.op_type][1](args, values[step.output], g)):
                local = unbroadcast(np.asarray(local), arg.shape).astype(arg.dtype, copy=False)
                grads[name] = grads[name] + local if name in grads else local
        return tuple(grads.get(x, np.zeros_like(values[x])).astype(values[x].dtype, copy=False) for x in self.xs)


def _constant_value(node: Any) -> Array:
    for name, attr in node.attributes.items():
        value = attr.value
        if name == "value":
            return np.asarray(value.numpy())
        if name in ("value_float", "value_floats"):
            return np.asarray(value, dtype=np.float32)
        if name in ("value_int", "value_ints"):
            return np.asarray(value, dtype=np.int64)
    raise NotImplemented(f"Gradient: cannot read the Constant node '{node.name}'")


def _prepare(
    constants: list[Array | None], *, xs: list[str], y: str, zs: list[str] | None = None, _node: Any = None
) -> Callable[..., tuple[Array, ...]]:
    return GradientProgram.from_node(_node, xs, y, zs or [])


if "_node" in CONTEXT_PARAMS:

    @kernel("Gradient", since=1, domain=DOMAIN, prepare=_prepare)
    def Gradient(*inputs: Array, xs: list[str], y: str, zs: list[str] | None = None, _node: Any = None) -> Any:
        return GradientProgram.from_node(_node, xs, y, zs or [])(*inputs)

else:

    @kernel("Gradient", since=1, domain=DOMAIN)
    def Gradient(*inputs: Array, xs: list[str], y: str, zs: list[str] | None = None) -> Any:
        raise NotImplemented(
            "Gradient differentiates the enclosing graph, which kernels do not see yet: the plan must pass the "
            "onnx-ir node as the '_node' context parameter"
        )
