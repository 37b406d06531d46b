"""The kernel registry: ``@kernel("Softmax", since=13)`` and ``resolve(domain, op, opset)``.

A kernel is a plain typed function named as the op. Node inputs arrive positionally (``None`` for an
omitted optional input), attributes as keyword parameters with the spec's defaults. A few keyword-only
parameters whose names start with an underscore ask the plan for build-time context instead of an
attribute:

- ``_num_outputs``: how many outputs the node declares;
- ``_opset``: the opset version of the node's domain in this model;
- ``_outer``: for control-flow kernels, the dict of outer-scope values their subgraphs capture;
- ``_output_dtypes``: the declared element dtypes of the outputs (``None`` where unknown);
- ``_node``: the onnx-ir node itself, for the rare kernel that must see its graph (Gradient).

Multi-output kernels return a tuple. For the same (domain, op_type) the highest ``since`` that is
``<=`` the model's opset wins. Registering the same (domain, op_type, since) twice is an error.
"""

from __future__ import annotations

import bisect
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CONTEXT_PARAMS = frozenset({"_node", "_num_outputs", "_opset", "_outer", "_output_dtypes"})

# Kernels are registered under the canonical empty domain for the default ai.onnx opset.
_DOMAIN_ALIASES = {"ai.onnx": ""}


def canonical_domain(domain: str) -> str:
    return _DOMAIN_ALIASES.get(domain, domain)


@dataclass(frozen=True)
class KernelDef:
    """One registered kernel and what the plan needs to bind it."""

    op_type: str
    domain: str
    since: int
    fn: Callable[..., Any]
    attributes: frozenset[str]
    required: frozenset[str]
    context: frozenset[str]
    accepts_any_attribute: bool
    prepare: Callable[..., Callable[..., Any] | None] | None = field(default=None, compare=False)
    check: Callable[..., None] | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return f"{self.domain or 'ai.onnx'}::{self.op_type}-{self.since}"


class Registry:
    """Kernels keyed by (domain, op_type), each with its since-versions kept sorted."""

    def __init__(self) -> None:
        self._by_op: dict[tuple[str, str], list[KernelDef]] = {}

    def add(self, kdef: KernelDef) -> None:
        versions = self._by_op.setdefault((kdef.domain, kdef.op_type), [])
        if any(existing.since == kdef.since for existing in versions):
            raise ValueError(f"kernel {kdef.name} is registered twice")
        bisect.insort(versions, kdef, key=lambda k: k.since)

    def resolve(self, domain: str, op_type: str, opset: int) -> KernelDef | None:
        """The kernel with the highest since-version <= ``opset``, or None."""
        versions = self._by_op.get((canonical_domain(domain), op_type))
        if not versions:
            return None
        index = bisect.bisect_right(versions, opset, key=lambda k: k.since)
        return versions[index - 1] if index else None

    def versions(self, domain: str, op_type: str) -> list[int]:
        return [k.since for k in self._by_op.get((canonical_domain(domain), op_type), [])]

    def ops(self) -> list[tuple[str, str]]:
        return sorted(self._by_op)


REGISTRY = Registry()


def _describe(fn: Callable[..., Any]) -> tuple[frozenset[str], frozenset[str], frozenset[str], bool]:
    attributes: set[str] = set()
    required: set[str] = set()
    context: set[str] = set()
    any_attribute = False
    for param in inspect.signature(fn).parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            any_attribute = True
        elif param.kind is inspect.Parameter.KEYWORD_ONLY:
            if param.name.startswith("_"):
                if param.name not in CONTEXT_PARAMS:
                    raise ValueError(f"{fn.__qualname__}: unknown context parameter {param.name}")
                context.add(param.name)
            else:
                attributes.add(param.name)
                if param.default is inspect.Parameter.empty:
                    required.add(param.name)
    return frozenset(attributes), frozenset(required), frozenset(context), any_attribute


def kernel(
    op_type: str,
    since: int = 1,
    domain: str = "",
    *,
    registry: Registry | None = None,
    prepare: Callable[..., Callable[..., Any] | None] | None = None,
    check: Callable[..., None] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` as the kernel of ``op_type`` from opset ``since`` on, in ``domain``.

    ``prepare(constant_inputs, **attributes)``, when given, runs once at plan-build time with the node's
    constant inputs (``None`` where not constant) and may return a specialised callable that replaces
    ``fn`` for that node (for weight packing and layout choices).

    ``check(constant_inputs, **attributes)``, given with ``prepare``, raises every error ``prepare`` would
    raise, and lets the plan run ``prepare`` only when the node's call is needed (still at build time): a
    plan-time fusion that replaces the call then never packs a weight for nothing.
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        attributes, required, context, any_attribute = _describe(fn)
        kdef = KernelDef(
            op_type, canonical_domain(domain), since, fn, attributes, required, context, any_attribute, prepare, check
        )
        (registry or REGISTRY).add(kdef)
        return fn

    return register


def resolve(domain: str, op_type: str, opset: int) -> KernelDef | None:
    """The default registry's kernel for ``op_type`` at ``opset`` in ``domain``, or None."""
    return REGISTRY.resolve(domain, op_type, opset)
