"""BatchNormalization below opset 14: the outputs it lists choose training mode (batch statistics), as in
onnxruntime; trailing empty output names are outputs not asked for. Optimized or not, the answer is the same."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge import GraphOptimizationLevel, InferenceSession, SessionOptions

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
SCALE, BIAS, MEAN, VAR = (RNG.random(4).astype(np.float32) + 0.5 for _ in range(4))


def _model(opset: int, bn_outputs: list[str], conv_only: bool = False) -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"])]
    if not conv_only:
        nodes += [
            helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], bn_outputs),
            helper.make_node("Relu", ["y"], ["z"]),
        ]
    inits = [numpy_helper.from_array(a, n) for n, a in zip("wsbmv", (W, SCALE, BIAS, MEAN, VAR))]
    graph = helper.make_graph(
        nodes,
        "bn",
        [helper.make_tensor_value_info("x", F, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("c" if conv_only else "z", F, None)],
        inits if not conv_only else inits[:1],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: onnx.ModelProto, x: np.ndarray, optimize: bool) -> np.ndarray:
    options = SessionOptions()
    if not optimize:
        options.graph_optimization_level = GraphOptimizationLevel.ORT_DISABLE_ALL
    return InferenceSession(model.SerializeToString(), options).run(None, {"x": x})[0]


@pytest.mark.parametrize("opset", [9, 13])
@pytest.mark.parametrize(
    ("bn_outputs", "training"),
    [
        (["y"], False),
        (["y", "", "", "", ""], False),
        (["y", "running_mean", "running_var", "saved_mean", "saved_var"], True),
    ],
)
@pytest.mark.parametrize("optimize", [False, True])
def test_listed_outputs_choose_the_mode(opset: int, bn_outputs: list[str], training: bool, optimize: bool) -> None:
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    conv = _run(_model(opset, [], conv_only=True), x, optimize=False).astype(np.float64)
    if training:
        mean, var = conv.mean(axis=(0, 2, 3)), conv.var(axis=(0, 2, 3))
    else:
        mean, var = MEAN.astype(np.float64), VAR.astype(np.float64)
    shape = (1, 4, 1, 1)
    want = np.maximum(
        (conv - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5) * SCALE.reshape(shape) + BIAS.reshape(shape),
        0,
    )

    got = _run(_model(opset, bn_outputs), x, optimize)

    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("bn_outputs", "training"), [(["y", "", "", "", ""], False), (["y", "rm", "rv", "sm", "sv"], True)]
)
def test_a_folded_constant_bn_uses_the_same_mode(bn_outputs: list[str], training: bool) -> None:
    x = RNG.standard_normal((2, 4, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for n, a in zip(("xc", "s", "b", "m", "v"), (x, SCALE, BIAS, MEAN, VAR))]
    graph = helper.make_graph(
        [
            helper.make_node("BatchNormalization", ["xc", "s", "b", "m", "v"], bn_outputs),
            helper.make_node("Add", ["y", "d"], ["z"]),
        ],
        "constant_bn",
        [helper.make_tensor_value_info("d", F, [2, 4, 3, 3])],
        [helper.make_tensor_value_info("z", F, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    x64 = x.astype(np.float64)
    mean, var = (x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))) if training else (MEAN, VAR)
    shape = (1, 4, 1, 1)
    want = (x64 - np.reshape(mean, shape)) / np.sqrt(np.reshape(var, shape) + 1e-5) * SCALE.reshape(shape)
    want += BIAS.reshape(shape)
    d = np.zeros((2, 4, 3, 3), np.float32)
    for optimize in (False, True):
        options = SessionOptions()
        if not optimize:
            options.graph_optimization_level = GraphOptimizationLevel.ORT_DISABLE_ALL
        (got,) = InferenceSession(model.SerializeToString(), options).run(None, {"d": d})
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
