"""Channels-last chains with grouped pointwise convs and a folded channel shuffle (ShuffleNet's unit)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument, SessionOptions
from onnxforge.runtime.plan_builder import PlanBuilder

RNG = np.random.default_rng(23)
C_IN, HIDDEN, C_OUT = 8, 12, 8


def _unit(
    first_group: int,
    shuffle_groups: int | None,
    last_group: int,
    stride: int = 1,
    batch: int | None = 2,
    size: tuple[int, int] = (9, 11),
    expose: str | None = None,
) -> onnx.ModelProto:
    """Grouped 1x1 conv + ReLU, channel shuffle (Reshape, Transpose, Reshape) when ``shuffle_groups``, 3x3
    depthwise conv, grouped 1x1 conv. ``batch`` None: the input's batch dim is symbolic. ``expose``: a middle
    value that is a graph output too."""
    h, w = size
    n = batch or 2
    inits = {
        "w1": RNG.standard_normal((HIDDEN, C_IN // first_group, 1, 1)).astype(np.float32),
        "b1": RNG.standard_normal(HIDDEN).astype(np.float32),
        "wd": RNG.standard_normal((HIDDEN, 1, 3, 3)).astype(np.float32),
        "bd": RNG.standard_normal(HIDDEN).astype(np.float32),
        "w2": RNG.standard_normal((C_OUT, HIDDEN // last_group, 1, 1)).astype(np.float32),
        "b2": RNG.standard_normal(C_OUT).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["e"], name="gconv1", group=first_group),
        helper.make_node("Relu", ["e"], ["r"], name="relu"),
    ]
    middle = "r"
    if shuffle_groups:
        inits["split"] = np.array([n, shuffle_groups, HIDDEN // shuffle_groups, h, w], np.int64)
        inits["merge"] = np.array([n, HIDDEN, h, w], np.int64)
        nodes += [
            helper.make_node("Reshape", ["r", "split"], ["s5"], name="split"),
            helper.make_node("Transpose", ["s5"], ["t5"], name="swap", perm=[0, 2, 1, 3, 4]),
            helper.make_node("Reshape", ["t5", "merge"], ["shuffled"], name="merge"),
        ]
        middle = "shuffled"
    nodes += [
        helper.make_node(
            "Conv", [middle, "wd", "bd"], ["d"], name="dw", group=HIDDEN, strides=[stride] * 2, pads=[1, 1, 1, 1]
        ),
        helper.make_node("Conv", ["d", "w2", "b2"], ["y"], name="gconv2", group=last_group),
    ]
    graph = helper.make_graph(
        nodes,
        "unit",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch if batch else "N", C_IN, h, w])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ["y", expose] if name],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _step_ops(model: onnx.ModelProto) -> list[str]:
    plan = PlanBuilder(ir.serde.deserialize_model(model).opset_imports, optimize=True).build(
        ir.serde.deserialize_model(model).graph
    )
    return [info.op_type for info in plan.infos]


def _check_numbers(model: onnx.ModelProto, threads: int, batch: int = 2) -> None:
    x = RNG.standard_normal((batch, C_IN, 9, 11)).astype(np.float32)
    options = SessionOptions()
    options.intra_op_num_threads = threads
    session, reference = InferenceSession(model.SerializeToString(), options), ReferenceEvaluator(model)
    got, want = session.run(None, {"x": x})[0], reference.run(None, {"x": x})[0]
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    if len(model.graph.output) > 1:
        for ours, theirs in zip(session.run(None, {"x": x})[1:], reference.run(None, {"x": x})[1:]):
            assert ours.shape == theirs.shape  # returned NCHW, as declared
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_shufflenet_unit_folds_its_shuffle_into_the_first_grouped_conv(stride: int, threads: int) -> None:
    model = _unit(first_group=4, shuffle_groups=4, last_group=4, stride=stride)
    _check_numbers(model, threads)
    assert _step_ops(model) == ["Conv", "Conv", "Conv"]  # Reshape, Transpose, Reshape are gone


def test_the_fused_step_names_the_shuffle_nodes_it_covers() -> None:
    model = _unit(first_group=4, shuffle_groups=4, last_group=4)
    plan = PlanBuilder(ir.serde.deserialize_model(model).opset_imports, optimize=True).build(
        ir.serde.deserialize_model(model).graph
    )
    first = plan.infos[0]
    assert first.name == "gconv1"
    assert [info.name for info in first.fused] == ["relu", "split", "swap", "merge"]


@pytest.mark.parametrize("last_group", [1, 2])
def test_a_shuffle_after_a_one_group_conv_permutes_its_weight_rows(last_group: int) -> None:
    model = _unit(first_group=1, shuffle_groups=3, last_group=last_group)
    _check_numbers(model, threads=1)
    assert _step_ops(model) == ["Conv", "Conv", "Conv"]


@pytest.mark.parametrize(("first_group", "last_group"), [(2, 4), (1, 4), (4, 1)])
@pytest.mark.parametrize("threads", [1, 2])
def test_grouped_convs_without_a_shuffle_run_the_chain_too(first_group: int, last_group: int, threads: int) -> None:
    model = _unit(first_group=first_group, shuffle_groups=None, last_group=last_group)
    _check_numbers(model, threads)
    assert _step_ops(model) == ["Conv", "Conv", "Conv"]


def test_a_shuffle_whose_blocks_are_not_the_conv_groups_stays_as_it_is() -> None:
    model = _unit(first_group=2, shuffle_groups=4, last_group=4)
    _check_numbers(model, threads=1)
    assert _step_ops(model) == ["Conv", "Reshape", "Transpose", "Reshape", "Conv", "Conv"]


@pytest.mark.parametrize("middle", ["r", "t5", "shuffled"])
def test_a_middle_value_of_the_shuffle_that_is_a_graph_output_keeps_the_chain_off(middle: str) -> None:
    model = _unit(first_group=4, shuffle_groups=4, last_group=4, expose=middle)
    _check_numbers(model, threads=1)
    assert _step_ops(model) == ["Conv", "Reshape", "Transpose", "Reshape", "Conv", "Conv"]


def test_an_input_the_shuffle_shapes_do_not_fit_is_refused_by_name() -> None:
    model = _unit(first_group=4, shuffle_groups=4, last_group=4, batch=None)
    session = InferenceSession(model.SerializeToString())
    with pytest.raises(
        InvalidArgument, match=r"Reshape \(channel shuffle\).*\(N, H, W\) = \(3, 9, 11\).*\[2, 12, 9, 11\]"
    ):
        session.run(None, {"x": RNG.standard_normal((3, C_IN, 9, 11)).astype(np.float32)})
    # The shapes it was made for still run, with the reference's numbers.
    _check_numbers(model, threads=1, batch=2)
