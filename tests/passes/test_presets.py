"""presets.optimize: ORT optimization levels as pass lists, interface and numbers preserved."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import helper

from onnxforge import GraphOptimizationLevel
from onnxforge.passes.presets import optimize
from onnxforge.runtime import optimizer_hook

from .helpers import F, assert_same_outputs, init, make_model, ops, rand, tensor_info
from .test_simplify import _messy_model


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (GraphOptimizationLevel.ORT_DISABLE_ALL, {"Conv": 1, "BatchNormalization": 1, "Identity": 1, "Add": 1}),
        (GraphOptimizationLevel.ORT_ENABLE_BASIC, {"Conv": 1, "BatchNormalization": 1, "Identity": 0, "Add": 0}),
        (GraphOptimizationLevel.ORT_ENABLE_EXTENDED, {"Conv": 1, "BatchNormalization": 0, "Identity": 0, "Add": 0}),
        (GraphOptimizationLevel.ORT_ENABLE_ALL, {"Conv": 1, "BatchNormalization": 0, "Identity": 0, "Add": 0}),
    ],
)
def test_levels(level: GraphOptimizationLevel, expected: dict[str, int]) -> None:
    proto = _messy_model()
    model = ir.serde.deserialize_model(proto)
    result = optimize(model, int(level))
    counts = ops(result)
    assert {op: counts[op] for op in expected} == expected
    assert [v.name for v in result.graph.inputs] == ["x"] and [v.name for v in result.graph.outputs] == ["y"]
    assert_same_outputs(proto, result, {"x": rand(3, 3, 5, 5)}, rtol=1e-4, atol=1e-4)
    if level > 0:
        assert ops(model)["BatchNormalization"] == 1  # the given model is not rewritten


def test_overridable_initializers_are_not_folded() -> None:
    proto = make_model(
        [helper.make_node("Mul", ["w", "two"], ["w2"]), helper.make_node("Add", ["x", "w2"], ["y"])],
        [tensor_info("x", F, [3]), tensor_info("w", F, [3])],
        [tensor_info("y", F, [3])],
        [init("w", np.arange(3, dtype=np.float32)), init("two", np.float32(2))],
    )
    result = optimize(ir.serde.deserialize_model(proto), 99)
    assert ops(result) == {"Mul": 1, "Add": 1}
    assert [v.name for v in result.graph.inputs] == ["x", "w"]


def test_check_n_keeps_numbers() -> None:
    proto = _messy_model()
    result = optimize(ir.serde.deserialize_model(proto), 2, check_n=2)
    assert ops(result)["BatchNormalization"] == 0
    assert_same_outputs(proto, result, {"x": rand(2, 3, 5, 5)}, rtol=1e-4, atol=1e-4)


def test_importing_passes_installs_the_session_hook() -> None:
    import onnxforge.passes  # noqa: F401

    model = ir.serde.deserialize_model(_messy_model())
    assert ops(optimizer_hook.optimize_for_level(model, 2))["BatchNormalization"] == 0
    assert optimizer_hook.optimize_for_level(model, 0) is model
