"""Transformer fusions (runtime/fusion_transformer.py): they fire, and give the numbers of the unfused plan and ORT."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge import InferenceSession, SessionOptions
from onnxforge.runtime import fusion_transformer
from onnxforge.runtime.kernels.activation import gelu_float32, softmax_last_axis_into
from onnxforge.runtime.kernels.normalization import LayerNormalization
from onnxforge.runtime.plan import Plan
from onnxforge.runtime.plan_builder import PlanBuilder

RNG = np.random.default_rng(11)


def _model(
    nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], inputs: list[str], outputs: list[str]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _plan(model: onnx.ModelProto, optimize: bool) -> Plan:
    irm = ir.serde.deserialize_model(model)
    return PlanBuilder(irm.opset_imports, optimize=optimize).build(irm.graph)


def _ours(model: onnx.ModelProto, feeds: dict[str, np.ndarray], threads: int) -> list[np.ndarray]:
    options = SessionOptions()
    options.intra_op_num_threads = threads
    return InferenceSession(model.SerializeToString(), options).run(None, feeds)


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.fixture
def parallel_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Let the tests' small shapes split across threads too, and count the splits (parts per call)."""
    calls: list[int] = []
    real = fusion_transformer.threads.parallel

    def counting(tasks: list) -> None:
        calls.append(len(tasks))
        real(tasks)

    monkeypatch.setattr(fusion_transformer, "_MIN_PARALLEL_MACS", 0)
    monkeypatch.setattr(fusion_transformer.threads, "parallel", counting)
    return calls


def _fused_groups(model: onnx.ModelProto) -> list[list[str]]:
    """For each step of the optimized plan: the op types of the nodes it does."""
    return [[info.op_type] + [other.op_type for other in info.fused] for info in _plan(model, optimize=True).infos]


def _check(model: onnx.ModelProto, feeds: dict[str, np.ndarray], threads: int = 1) -> np.ndarray:
    ours = _ours(model, feeds, threads)[0]
    plain = _plan(model, optimize=False).run(list(feeds.values()))[0]
    np.testing.assert_allclose(ours, plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours, _ort(model, feeds)[0], rtol=1e-3, atol=1e-4)
    return ours


# ----- Linear -------------------------------------------------------------------------------------------
def _linear(gelu: bool, bias_first: bool, n: int = 40) -> onnx.ModelProto:
    k = 24
    inits = {
        "w": (RNG.standard_normal((k, n)) / math.sqrt(k)).astype(np.float32),
        "b": RNG.standard_normal(n).astype(np.float32),
        "sqrt2": np.float32(math.sqrt(2)),
        "one": np.float32(1.0),
        "half": np.float32(0.5),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),
        helper.make_node("Add", ["b", "mm"] if bias_first else ["mm", "b"], ["h" if gelu else "y"], name="bias"),
    ]
    if gelu:  # exact GELU as torch exports it
        nodes += [
            helper.make_node("Div", ["h", "sqrt2"], ["d"], name="div"),
            helper.make_node("Erf", ["d"], ["e"], name="erf"),
            helper.make_node("Add", ["e", "one"], ["e1"], name="plus1"),
            helper.make_node("Mul", ["h", "e1"], ["m"], name="mul"),
            helper.make_node("Mul", ["m", "half"], ["y"], name="half"),
        ]
    return _model(nodes, inits, ["x"], ["y"])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("gelu", "bias_first"), [(False, False), (False, True), (True, True)])
def test_matmul_bias_gelu_become_one_step_with_the_same_numbers(
    gelu: bool, bias_first: bool, threads: int, parallel_calls: list[int]
) -> None:
    model = _linear(gelu, bias_first)
    assert _fused_groups(model) == [["MatMul", "Add", "Div", "Erf", "Add", "Mul", "Mul"] if gelu else ["MatMul", "Add"]]
    # 3-D input (rows split into bands across threads), 2-D, 1-D, and one row.
    for shape in [(3, 50, 24), (70, 24), (24,), (1, 24)]:
        y = _check(model, {"x": RNG.standard_normal(shape).astype(np.float32) * 3}, threads)
        assert y.shape == (*shape[:-1], 40)
    # Only the 150- and 70-row inputs are cut into bands (16 rows at least), and only with two threads.
    assert parallel_calls == ([2, 2] if threads == 2 else [])


@pytest.mark.parametrize("gelu", [False, True])
def test_a_linear_with_fewer_rows_than_weight_columns_splits_the_columns(gelu: bool, parallel_calls: list[int]) -> None:
    model = _linear(gelu, bias_first=False, n=200)
    x = RNG.standard_normal((2, 10, 24)).astype(np.float32) * 3
    y = _check(model, {"x": x}, threads=2)
    assert y.shape == (2, 10, 200)
    # 20 rows are too few for two row bands (16 rows at least): the split is two bands of 100 columns.
    assert parallel_calls == [2]


@pytest.mark.parametrize("threads", [1, 2])
def test_a_matmul_by_a_constant_matrix_alone_gives_the_same_numbers(threads: int) -> None:
    w = RNG.standard_normal((24, 40)).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="head")], {"w": w}, ["x"], ["y"])
    assert _fused_groups(model) == [["MatMul"]]
    for shape in [(3, 50, 24), (24,)]:
        x = RNG.standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(_check(model, {"x": x}, threads), np.matmul(x, w), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="inner dimension"):
        _ours(model, {"x": np.ones((2, 5), np.float32)}, threads)


def test_a_linear_whose_product_is_also_a_graph_output_is_not_fused() -> None:
    model = _linear(gelu=False, bias_first=False)
    model.graph.output.append(helper.make_tensor_value_info("mm", TensorProto.FLOAT, None))
    assert ["MatMul", "Add"] not in _fused_groups(model)
    feeds = {"x": RNG.standard_normal((4, 24)).astype(np.float32)}
    for ours, theirs in zip(_ours(model, feeds, 1), _ort(model, feeds)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)


# ----- attention ----------------------------------------------------------------------------------------
def _attention(mask: str, mask_shape: tuple[int, ...] = (6, 6)) -> onnx.ModelProto:
    """q, k, v (B, H, S, D) -> softmax(q k^T * scale [masked]) v, heads moved back and merged, as torch exports."""
    batch, heads, seq, dim = 2, 3, 6, 4
    inits: dict[str, np.ndarray] = {"scale": np.float32(dim**-0.5), "shape": np.array([batch, seq, heads * dim])}
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2], name="kt"),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
        helper.make_node("Mul", ["s", "scale"], ["scaled"], name="scale"),
    ]
    scores = "scaled"
    causal = np.triu(np.ones(mask_shape, dtype=bool), 1)
    if mask == "where":
        inits |= {"cond": causal, "fill": np.float32(-np.inf)}
        nodes.append(helper.make_node("Where", ["cond", "fill", "scaled"], ["masked"], name="where"))
        scores = "masked"
    elif mask == "add":
        inits["bias"] = np.where(causal, np.float32(-1e4), np.float32(0)).astype(np.float32)
        nodes.append(helper.make_node("Add", ["bias", "scaled"], ["masked"], name="mask"))
        scores = "masked"
    nodes += [
        helper.make_node("Softmax", [scores], ["p"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["p", "v"], ["o"], name="pv"),
        helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3], name="heads_back"),
        helper.make_node("Reshape", ["ot", "shape"], ["y"], name="merge"),
    ]
    return _model(nodes, inits, ["q", "k", "v"], ["y"])


def _qkv() -> dict[str, np.ndarray]:
    return {name: RNG.standard_normal((2, 3, 6, 4)).astype(np.float32) * 2 for name in "qkv"}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mask", ["none", "where", "add"])
def test_attention_core_becomes_one_step_with_the_same_numbers(
    mask: str, threads: int, parallel_calls: list[int]
) -> None:
    model = _attention(mask)
    middle = {"none": [], "where": ["Where"], "add": ["Add"]}[mask]
    assert ["MatMul", "Mul", *middle, "Softmax", "MatMul"] in _fused_groups(model)
    y = _check(model, _qkv(), threads)
    assert y.shape == (2, 6, 12)
    assert parallel_calls == ([2] if threads == 2 else [])  # the two batch entries side by side
    one = {name: value[:1] for name, value in _qkv().items()}  # one batch entry: its heads split instead
    shape = next(init for init in model.graph.initializer if init.name == "shape")
    shape.CopyFrom(numpy_helper.from_array(np.array([1, 6, 12]), "shape"))
    _check(model, one, threads)
    assert parallel_calls == ([2, 2] if threads == 2 else [])


def test_attention_with_a_mask_that_broadcasts_the_scores_larger_falls_back_to_the_original_kernels(
    parallel_calls: list[int],
) -> None:
    model = _attention("where", mask_shape=(2, 1, 6, 6))  # scores are (2, 3, 6, 6): fine in place
    _check(model, _qkv(), 2)
    feeds = _qkv()
    feeds = {name: value[:1] for name, value in feeds.items()}  # scores (1, 3, 6, 6), Where's result (2, 3, 6, 6)
    plain = _plan(model, optimize=False)
    # Reshape to (2, 6, 12) still fits the broadcast result's 2 * 3 * 6 * 4 elements.
    np.testing.assert_allclose(_ours(model, feeds, 1)[0], plain.run(list(feeds.values()))[0], rtol=1e-6)


# ----- kernels ------------------------------------------------------------------------------------------
def test_gelu_float32_is_within_2e_6_of_the_exact_gelu_and_zero_far_left() -> None:
    x = np.linspace(-10, 10, 200_001).astype(np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    assert np.abs(gelu_float32(x).astype(np.float64) - exact).max() < 2e-6
    tails = gelu_float32(np.array([-1e6, -40.0, 40.0, 1e6, 0.0], np.float32))
    np.testing.assert_array_equal(tails, np.array([0.0, 0.0, 40.0, 1e6, 0.0], np.float32))
    buffer = x.copy()
    assert gelu_float32(buffer, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, gelu_float32(x))


def test_softmax_in_place_matches_the_float64_definition() -> None:
    x = RNG.standard_normal((3, 5, 17)).astype(np.float32) * 10
    wide = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
    expected = wide / wide.sum(-1, keepdims=True)
    got = x.copy()
    assert softmax_last_axis_into(got) is got
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_layer_norm_last_axis_fast_path_matches_the_float64_definition() -> None:
    x = RNG.standard_normal((2, 7, 33)).astype(np.float32) * 5 + 3
    scale, bias = RNG.standard_normal(33).astype(np.float32), RNG.standard_normal(33).astype(np.float32)
    wide = x.astype(np.float64)
    normalized = (wide - wide.mean(-1, keepdims=True)) / np.sqrt(wide.var(-1, keepdims=True) + 1e-5)
    expected = normalized * scale + bias
    for axis in (-1, 2):
        got = LayerNormalization(x, scale, bias, axis=axis, epsilon=1e-5)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(LayerNormalization(x, scale, axis=-1), normalized * scale, rtol=1e-4, atol=1e-5)
