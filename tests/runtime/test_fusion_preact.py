"""BatchNormalization -> Relu -> Conv (runtime/fusion_preact.py): the unfused plan's numbers, fewer passes."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge import InferenceSession
from onnxforge._errors import OnnxForgeError
from onnxforge.runtime.fusion_preact import _tap_sums
from onnxforge.runtime.plan import Plan
from onnxforge.runtime.plan_builder import PlanBuilder

RNG = np.random.default_rng(3)
C, M = 6, 5


def _model(kernel: int, pads: int, scale_sign: float = 1.0, conv_first: bool = False) -> onnx.ModelProto:
    scale = RNG.uniform(0.5, 2.0, C).astype(np.float32) * np.float32(scale_sign)
    inits = {
        "s": scale,
        "b": RNG.standard_normal(C).astype(np.float32),
        "mu": RNG.standard_normal(C).astype(np.float32),
        "var": RNG.uniform(0.5, 2.0, C).astype(np.float32),
        "w": RNG.standard_normal((M, C, kernel, kernel)).astype(np.float32),
        "wb": RNG.standard_normal(M).astype(np.float32),
        "w0": RNG.standard_normal((C, C, 1, 1)).astype(np.float32),
    }
    nodes = []
    source = "x"
    if conv_first:
        nodes.append(helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0"))
        source = "c0"
    nodes += [
        helper.make_node("BatchNormalization", [source, "s", "b", "mu", "var"], ["n"], name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w", "wb"], ["y"], name="conv", pads=[pads] * 4),
    ]
    graph = helper.make_graph(
        nodes,
        "preact",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model


def _plan(model: onnx.ModelProto, optimize: bool) -> Plan:
    irm = ir.serde.deserialize_model(model)
    return PlanBuilder(irm.opset_imports, optimize=optimize).build(irm.graph)


def _call_names(plan: Plan) -> list[str]:
    return [getattr(step[0], "__name__", "") for step in plan.steps]


@pytest.mark.parametrize(("kernel", "pads"), [(1, 0), (3, 0), (3, 1)])
def test_bn_relu_conv_gives_the_unfused_numbers(kernel: int, pads: int) -> None:
    model = _model(kernel, pads)
    fused, plain = _plan(model, optimize=True), _plan(model, optimize=False)
    assert "preactivation" in _call_names(fused)
    assert len(fused.steps) == 2 and len(plain.steps) == 3
    x = RNG.standard_normal((2, C, 7, 8)).astype(np.float32) * 2
    (got,), (want,) = fused.run([x]), plain.run([x])
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_a_negative_scale_keeps_the_three_steps() -> None:
    model = _model(1, 0, scale_sign=-1.0)
    fused = _plan(model, optimize=True)
    assert "preactivation" not in _call_names(fused)
    x = RNG.standard_normal((1, C, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(fused.run([x])[0], _plan(model, optimize=False).run([x])[0], rtol=1e-5, atol=1e-5)


def test_a_bn_that_folds_into_the_conv_before_it_is_left_to_that_fold() -> None:
    model = _model(1, 0, conv_first=True)
    fused = _plan(model, optimize=True)
    assert "preactivation" not in _call_names(fused)
    assert len(fused.steps) == 2  # conv0 + BN + Relu, then conv
    x = RNG.standard_normal((1, C, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(fused.run([x])[0], _plan(model, optimize=False).run([x])[0], rtol=1e-5, atol=1e-4)


def test_a_wrong_channel_count_still_fails_with_a_typed_error() -> None:
    session = InferenceSession(_model(1, 0).SerializeToString())
    with pytest.raises(OnnxForgeError, match="BatchNormalization"):
        session.run(None, {"x": RNG.standard_normal((1, C + 1, 4, 4)).astype(np.float32)})


def test_tap_sums_equal_the_float64_sum_over_the_kernel_positions() -> None:
    for shape in [(5, 6, 1, 1), (5, 6, 3, 3), (4, 3, 1), (4, 3, 2), (9, 8, 1, 1), (3, 2, 1, 1, 1), (2, 3, 1, 4)]:
        w = RNG.standard_normal(shape).astype(np.float32)
        got = _tap_sums(w)
        want = w.reshape(shape[0], shape[1], -1).sum(axis=2, dtype=np.float64)
        assert got.dtype == np.float64 and got.shape == shape[:2]
        np.testing.assert_array_equal(got, want)
        t = RNG.standard_normal(shape[1])
        np.testing.assert_array_equal(got @ t, want @ t)  # the bias shift: the same product, bit for bit
