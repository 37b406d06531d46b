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


def test_reload_lets_the_passes_edit_the_model_in_place() -> None:
    proto = _messy_model()
    model = ir.serde.deserialize_model(proto)
    reloads: list[ir.Model] = []

    def reload() -> ir.Model:
        reloads.append(ir.serde.deserialize_model(proto))
        return reloads[-1]

    result = optimize(model, 2, reload=reload)
    assert result is model and not reloads
    assert ops(result)["BatchNormalization"] == 0
    assert_same_outputs(proto, result, {"x": rand(2, 3, 5, 5)}, rtol=1e-4, atol=1e-4)


def test_a_failing_pass_restarts_from_a_reloaded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from onnxforge.passes import pipeline

    class Broken(ir.passes.InPlacePass):
        def call(self, model: ir.Model) -> ir.passes.PassResult:
            model.graph.outputs[0].name = "half-edited"  # a failing pass may leave the model changed
            raise RuntimeError("boom")

    specs = tuple(
        dataclasses.replace(s, make=lambda o: Broken()) if s.name == "fold_constants" else s for s in pipeline.PASSES
    )
    monkeypatch.setattr(pipeline, "PASSES", specs)
    proto = _messy_model()
    reloads: list[ir.Model] = []

    def reload() -> ir.Model:
        reloads.append(ir.serde.deserialize_model(proto))
        return reloads[-1]

    result = optimize(ir.serde.deserialize_model(proto), 2, reload=reload)
    assert len(reloads) == 1 and result is reloads[0]
    assert [v.name for v in result.graph.outputs] == ["y"] and ops(result)["BatchNormalization"] == 0
    assert_same_outputs(proto, result, {"x": rand(2, 3, 5, 5)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dynamic", [False, True])
def test_inferred_shapes_are_applied_and_not_inferred_again(monkeypatch: pytest.MonkeyPatch, dynamic: bool) -> None:
    """With ``inferred``, shape folding works from the given shapes; the pass itself runs only after a change,
    and only if some shape is not static yet (a symbolic dim: inference might learn more)."""
    import onnx

    from onnxforge.passes import infer_shapes

    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Reshape", ["x", "s"], ["y"]),
    ]
    inputs, outputs = [tensor_info("x", F, [2, 3])], [tensor_info("y", F, [2, 3])]
    if dynamic:
        nodes.append(helper.make_node("Relu", ["z"], ["w"]))
        inputs.append(tensor_info("z", F, ["n"]))
        outputs.append(tensor_info("w", F, ["n"]))
    proto = make_model(nodes, inputs, outputs)
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    runs: list[int] = []
    original = infer_shapes.InferShapesPass.call
    monkeypatch.setattr(infer_shapes.InferShapesPass, "call", lambda self, m: runs.append(1) or original(self, m))
    model = ir.serde.deserialize_model(proto)
    result = optimize(model, 2, reload=lambda: ir.serde.deserialize_model(proto), inferred=inferred.graph)
    assert "Shape" not in ops(result)
    # fold_shapes changed the model: shapes are inferred again once in the next round (not before it), unless
    # every shape was static already.
    assert len(runs) == (1 if dynamic else 0)
    feeds = {"x": rand(2, 3), "z": rand(4)} if dynamic else {"x": rand(2, 3)}
    assert_same_outputs(proto, result, feeds)


@pytest.mark.parametrize("chain", ["conv_bn", "conv_bn_mul_add", "matmul_add"])
def test_a_fused_node_that_makes_a_graph_output_keeps_its_name_and_the_rewrites(chain: str) -> None:
    # The fused node's output took the temporary '<name>__replaced', the interface check then refused the
    # whole optimized model and the session ran the model as given.
    rng = np.random.default_rng(0)
    if chain == "matmul_add":
        nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
        inits = [
            init("w", rng.standard_normal((5, 4)).astype(np.float32)),
            init("b", rng.standard_normal(4).astype(np.float32)),
        ]
        x_shape, fused = (3, 5), {"Gemm": 1, "MatMul": 0, "Add": 0}
    else:
        nodes = [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn" if chain != "conv_bn" else "y"]),
        ]
        params = [rng.random(4) + 0.5, rng.standard_normal(4), rng.standard_normal(4), rng.random(4) + 0.5]
        inits = [init("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))]
        inits += [init(name, p.astype(np.float32)) for name, p in zip("sbmv", params)]
        if chain == "conv_bn_mul_add":
            nodes += [helper.make_node("Mul", ["bn", "k"], ["scaled"]), helper.make_node("Add", ["scaled", "t"], ["y"])]
            inits += [init("k", np.float32([2.0, 3.0, 0.5, 1.0]).reshape(4, 1, 1)), init("t", np.float32(0.25))]
        x_shape, fused = (1, 3, 8, 8), {"Conv": 1, "BatchNormalization": 0, "Mul": 0, "Add": 0}
    proto = make_model(nodes, [tensor_info("x", F, list(x_shape))], [tensor_info("y", F, None)], inits)

    result = optimize(ir.serde.deserialize_model(proto), int(GraphOptimizationLevel.ORT_ENABLE_ALL))

    counts = ops(result)
    assert {op: counts[op] for op in fused} == fused
    assert [v.name for v in result.graph.outputs] == ["y"]
    assert_same_outputs(proto, result, {"x": rand(*x_shape)}, rtol=1e-4, atol=1e-4)
