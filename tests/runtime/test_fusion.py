"""Plan-time folding and fusion (runtime/fusion.py) give the numbers of the unoptimized plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, SessionOptions
from onnxforge._errors import InvalidArgument, OnnxForgeError
from onnxforge.runtime.plan import Plan, Profiler
from onnxforge.runtime.plan_builder import PlanBuilder

RNG = np.random.default_rng(7)


def _model(
    nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], outputs: list[str], ir_version: int = 8
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = ir_version
    return model


def _plan(model: onnx.ModelProto, optimize: bool) -> Plan:
    irm = ir.serde.deserialize_model(model)
    return PlanBuilder(irm.opset_imports, optimize=optimize).build(irm.graph)


def _run_both(model: onnx.ModelProto, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    fused = InferenceSession(model.SerializeToString()).run(None, {"x": x})
    plain = _plan(model, optimize=False).run([x])
    return fused, plain


def _conv_bn_relu() -> onnx.ModelProto:
    c, m = 3, 5
    inits = {
        "w": RNG.standard_normal((m, c, 3, 3)).astype(np.float32),
        "b": RNG.standard_normal(m).astype(np.float32),
        "s": RNG.uniform(0.5, 2, m).astype(np.float32),
        "t": RNG.standard_normal(m).astype(np.float32),
        "mu": RNG.standard_normal(m).astype(np.float32),
        "var": RNG.uniform(0.5, 2, m).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "t", "mu", "var"], ["n"], name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    return _model(nodes, inits, ["y"])


@pytest.mark.parametrize("side", [6, 40])  # 40: large enough for the in-place Relu's np.clip path
def test_conv_bn_relu_folds_into_one_step_with_the_same_numbers(side: int) -> None:
    model = _conv_bn_relu()
    x = RNG.standard_normal((2, 3, side, side)).astype(np.float32)
    fused, plain = _run_both(model, x)
    np.testing.assert_allclose(fused[0], plain[0], rtol=1e-5, atol=1e-5)
    assert fused[0].min() == 0 and (fused[0] == 0).mean() > 0.1
    assert len(_plan(model, optimize=True).steps) == 1
    assert len(_plan(model, optimize=False).steps) == 3


def test_a_value_read_by_two_nodes_is_not_written_in_place() -> None:
    inits = {"w": RNG.standard_normal((4, 3, 1, 1)).astype(np.float32), "k": np.float32([2.0])}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="conv"),
        helper.make_node("Add", ["a", "k"], ["b"], name="add"),  # a is read again below: must survive
        helper.make_node("Mul", ["a", "k"], ["c"], name="mul"),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),  # b dies here: in place is fine
        helper.make_node("Sub", ["r", "c"], ["y"], name="sub"),
    ]
    model = _model(nodes, inits, ["y", "a"])
    x = RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)
    fused, plain = _run_both(model, x)
    for got, want in zip(fused, plain):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_graph_inputs_and_constants_are_never_written() -> None:
    nodes = [
        helper.make_node("Add", ["x", "k"], ["y"], name="add"),
        helper.make_node("Relu", ["y"], ["z"], name="relu"),
    ]
    model = _model(nodes, {"k": np.ones((2, 2), np.float32)}, ["z"])
    x = -np.ones((2, 2), np.float32) * 3
    sess = InferenceSession(model.SerializeToString())
    for _ in range(2):
        np.testing.assert_array_equal(sess.run(None, {"x": x})[0], np.zeros((2, 2), np.float32))
    np.testing.assert_array_equal(x, -3)


def test_constant_subgraphs_fold_and_overridable_initializers_fall_back() -> None:
    # From IR 4 an initializer listed as an input is overridable: the plan folds it, and feeding one must still
    # be honoured.
    shape = np.array([4, 3, 1, 1], np.int64)
    nodes = [
        helper.make_node(
            "ConstantOfShape", ["shape"], ["w"], name="fill", value=numpy_helper.from_array(np.float32([0.5]))
        ),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
    ]
    model = _model(nodes, {"shape": shape}, ["y"], ir_version=4)
    model.graph.input.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [4]))
    x = RNG.standard_normal((1, 3, 2, 2)).astype(np.float32)
    assert len(_plan(model, optimize=True).steps) == 1
    sess = InferenceSession(model.SerializeToString())
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], np.repeat(x.sum(1, keepdims=True) * 0.5, 4, 1), rtol=1e-6)
    other = sess.run(None, {"x": x, "shape": np.array([2, 3, 1, 1], np.int64)})[0]
    assert other.shape == (1, 2, 2, 2)


def test_initializers_listed_as_inputs_below_ir4_are_constants() -> None:
    # Before IR 4 every initializer had to be an input too; onnxruntime treats them as constants (so they
    # fold) and rejects feeding one, and so do we.
    nodes = [
        helper.make_node("Add", ["x", "k"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["y"], name="relu"),
    ]
    model = _model(nodes, {"k": np.ones(2, np.float32)}, ["y"], ir_version=3)
    model.graph.input.append(helper.make_tensor_value_info("k", TensorProto.FLOAT, [2]))
    sess = InferenceSession(model.SerializeToString())
    assert [arg.name for arg in sess.get_inputs()] == ["x"]
    assert sess.get_overridable_initializers() == []
    x = np.array([-3.0, 0.5], np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], [0.0, 1.5])
    with pytest.raises(InvalidArgument, match="Invalid input name: k"):
        sess.run(None, {"x": x, "k": np.zeros(2, np.float32)})


def test_profile_names_every_original_node() -> None:
    # The plan itself, like the session's profiler: graph passes before it may already have folded the BN.
    profiler = Profiler()
    _plan(_conv_bn_relu(), optimize=True).run([np.ones((1, 3, 4, 4), np.float32)], profiler=profiler)
    names = {e["name"]: e for e in profiler.events}
    assert set(names) == {"conv_kernel_time", "bn_kernel_time", "relu_kernel_time"}
    assert names["conv_kernel_time"]["args"]["fused_nodes"] == ["bn", "relu"]


def test_session_profile_still_writes_events(tmp_path: Path) -> None:
    opts = SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "prof")
    sess = InferenceSession(_conv_bn_relu().SerializeToString(), sess_options=opts)
    sess.run(None, {"x": np.ones((1, 3, 4, 4), np.float32)})
    events = json.loads(Path(sess.end_profiling()).read_text())
    assert {"conv_kernel_time", "relu_kernel_time"} <= {e["name"] for e in events}


def test_errors_name_the_fused_nodes() -> None:
    # The plan itself: session-level graph passes may already have folded the BatchNormalization away.
    plan = _plan(_conv_bn_relu(), optimize=True)
    with pytest.raises(OnnxForgeError, match=r"node 'conv'.*fused with 'bn' \(BatchNormalization\), 'relu'"):
        plan.run([np.ones((1, 2, 4, 4), np.float32)])


def test_batched_small_images_take_the_flat_im2col_path() -> None:
    inits = {"w": RNG.standard_normal((6, 4, 3, 3)).astype(np.float32), "b": RNG.standard_normal(6).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 0, 2, 1], dilations=[1, 2])]
    model = _model(nodes, inits, ["y"])
    x = RNG.standard_normal((8, 4, 7, 9)).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(
        InferenceSession(model.SerializeToString()).run(None, {"x": x})[0], want, rtol=1e-4, atol=1e-4
    )


def test_conv_mul_add_fold_and_a_one_input_sum_is_not_fresh() -> None:
    m = 4
    inits = {
        "w": RNG.standard_normal((m, 3, 1, 1)).astype(np.float32),
        "s": RNG.standard_normal((m, 1, 1)).astype(np.float32),
        "t": RNG.standard_normal((1, m, 1, 1)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Mul", ["s", "c"], ["d"], name="mul"),
        helper.make_node("Add", ["d", "t"], ["e"], name="add"),
        helper.make_node("Sum", ["e"], ["f"], name="sum1"),  # returns e itself: Relu must not write into it
        helper.make_node("Relu", ["f"], ["y"], name="relu"),
    ]
    model = _model(nodes, inits, ["y", "e"])
    x = RNG.standard_normal((2, 3, 3, 3)).astype(np.float32)
    fused, plain = _run_both(model, x)
    for got, want in zip(fused, plain):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert (fused[1] < 0).any()
    infos = _plan(model, optimize=True).infos
    assert [info.op_type for info in infos] == ["Conv", "Sum", "Relu"]
    assert [i.name for i in infos[0].fused] == ["mul", "add"]


def test_conv_results_do_not_share_the_reused_scratch_buffers() -> None:
    inits = {"w": RNG.standard_normal((1, 2, 3, 1)).astype(np.float32)}
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 0, 1, 0])], inits, ["y"])
    sess = InferenceSession(model.SerializeToString())
    x = RNG.standard_normal((4, 2, 5, 3)).astype(np.float32)
    first = sess.run(None, {"x": x})[0]
    kept = first.copy()
    sess.run(None, {"x": -x})
    np.testing.assert_array_equal(first, kept)


@pytest.mark.parametrize(
    ("bounds", "opset"),
    [((0.0, 6.0), 17), ((None, 0.5), 17), ((-0.25, None), 17), ((0.0, 6.0), 6)],
)
def test_conv_then_constant_clip_fuses_and_clips_like_the_plain_plan(
    bounds: tuple[float | None, float | None], opset: int
) -> None:
    """ReLU6 as exporters write it (Clip with constant min/max inputs, or Clip-6 attributes) folds into the Conv."""
    low, high = bounds
    inits = {"w": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32) * 3}
    if opset >= 11:
        names = ["c", "lo" if low is not None else "", "hi" if high is not None else ""]
        while not names[-1]:
            names.pop()
        inits.update({"lo": np.float32(low), "hi": np.float32(high)})
        inits = {k: v for k, v in inits.items() if k in ("w", *names)}
        clip = helper.make_node("Clip", names, ["y"], name="clip")
    else:
        clip = helper.make_node("Clip", ["c"], ["y"], name="clip", min=low, max=high)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]), clip]
    model = _model(nodes, {k: np.asarray(v) for k, v in inits.items()}, ["y"])
    model.opset_import[0].version = opset
    x = RNG.standard_normal((1, 3, 5, 5)).astype(np.float32)
    fused, plain = _run_both(model, x)
    np.testing.assert_array_equal(fused[0], plain[0])
    # Against onnx.reference up to the order of the conv's sums (a small conv is one dense product).
    np.testing.assert_allclose(fused[0], ReferenceEvaluator(model).run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
    assert low is None or fused[0].min() == np.float32(low)
    assert high is None or fused[0].max() == np.float32(high)
    assert len(_plan(model, optimize=True).steps) == 1
