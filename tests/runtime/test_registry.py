"""The kernel registry: highest since <= opset wins, duplicates are refused, context parameters are known."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.runtime.registry import Registry, canonical_domain, kernel


def _registry_with_versions() -> Registry:
    registry = Registry()

    @kernel("Frob", since=1, registry=registry)
    def frob_v1(x: np.ndarray) -> np.ndarray:
        return x

    @kernel("Frob", since=13, registry=registry)
    def frob_v13(x: np.ndarray, *, axis: int = -1, _opset: int = 0) -> np.ndarray:
        return x

    return registry


@pytest.mark.parametrize(("opset", "since"), [(1, 1), (12, 1), (13, 13), (21, 13)])
def test_highest_since_not_above_opset_wins(opset: int, since: int) -> None:
    kdef = _registry_with_versions().resolve("", "Frob", opset)
    assert kdef is not None and kdef.since == since


def test_below_first_version_and_unknown_op_resolve_to_none() -> None:
    registry = Registry()

    @kernel("Late", since=5, registry=registry)
    def late(x: np.ndarray) -> np.ndarray:
        return x

    assert registry.resolve("", "Late", 4) is None
    assert registry.resolve("", "Nope", 20) is None


def test_duplicate_registration_is_an_error() -> None:
    registry = _registry_with_versions()
    with pytest.raises(ValueError, match="registered twice"):

        @kernel("Frob", since=13, registry=registry)
        def again(x: np.ndarray) -> np.ndarray:
            return x


def test_attributes_and_context_are_read_from_the_signature() -> None:
    kdef = _registry_with_versions().resolve("ai.onnx", "Frob", 13)
    assert kdef is not None
    assert kdef.attributes == frozenset({"axis"})
    assert kdef.context == frozenset({"_opset"})
    assert canonical_domain("ai.onnx") == ""


def test_unknown_context_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="_bogus"):

        @kernel("Bad", since=1, registry=Registry())
        def bad(x: np.ndarray, *, _bogus: int = 0) -> np.ndarray:
            return x


def test_keyword_only_attributes_without_default_are_required() -> None:
    registry = Registry()

    @kernel("NeedsTo", since=1, registry=registry)
    def needs_to(x: np.ndarray, *, to: int, saturate: int = 1) -> np.ndarray:
        return x

    kdef = registry.resolve("", "NeedsTo", 1)
    assert kdef is not None and kdef.required == frozenset({"to"}) and kdef.attributes == {"to", "saturate"}
