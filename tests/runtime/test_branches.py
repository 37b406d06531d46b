"""ExecutionMode.ORT_PARALLEL: independent branches found at build time and run side by side."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge import ExecutionMode, InferenceSession, InvalidArgument, SessionOptions
from onnxforge.runtime import branches

RNG = np.random.default_rng(11)


def _inception_like(light_branch: bool = False) -> onnx.ModelProto:
    """x -> Relu -> {conv a -> relu, conv b -> conv c, maxpool (-> conv d)} -> Concat."""
    weights = {
        "wa": RNG.standard_normal((4, 3, 1, 1)).astype(np.float32),
        "wb": RNG.standard_normal((5, 3, 3, 3)).astype(np.float32),
        "wc": RNG.standard_normal((6, 5, 3, 3)).astype(np.float32),
        "wd": RNG.standard_normal((2, 3, 1, 1)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="stem"),
        helper.make_node("Conv", ["r", "wa"], ["a0"], name="conv_a"),
        helper.make_node("Relu", ["a0"], ["a"], name="relu_a"),
        helper.make_node("Conv", ["r", "wb"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "wc"], ["c"], name="conv_c", pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    tail = "p"
    if not light_branch:
        nodes.append(helper.make_node("Conv", ["p", "wd"], ["d"], name="conv_d"))
        tail = "d"
    nodes.append(helper.make_node("Concat", ["a", "c", tail], ["y"], name="join", axis=1))
    graph = helper.make_graph(
        nodes,
        "branches",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _session(model: onnx.ModelProto, mode: ExecutionMode, threads: int = 2) -> InferenceSession:
    options = SessionOptions()
    options.execution_mode = mode
    options.intra_op_num_threads = threads
    return InferenceSession(model.SerializeToString(), options)


def test_parallel_mode_runs_the_branches_in_parts_with_the_sequential_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _inception_like()
    parallel_session = _session(model, ExecutionMode.ORT_PARALLEL)
    (section,) = parallel_session._plan.sections
    assert len(section.branches) == 3
    split_into: list[int] = []
    real_parallel = branches.parallel

    def spy(tasks: Any) -> None:
        split_into.append(len(tasks))
        real_parallel(tasks)

    monkeypatch.setattr(branches, "parallel", spy)
    x = RNG.standard_normal((1, 3, 9, 7)).astype(np.float32)
    for _ in range(3):  # the fork's value is read by three branches: freeing it early would break a later run
        got = parallel_session.run(None, {"x": x})[0]
    assert split_into == [2, 2, 2]
    want = _session(model, ExecutionMode.ORT_SEQUENTIAL).run(None, {"x": x})[0]
    assert got.shape == (1, 12, 9, 7)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sections_need_two_heavy_branches() -> None:
    assert _session(_inception_like(), ExecutionMode.ORT_SEQUENTIAL)._plan.sections == []
    # Two heavy branches (conv a with its fused Relu, conv b -> conv c) make a section; the pool-only branch
    # rides along in it.
    (section,) = _session(_inception_like(light_branch=True), ExecutionMode.ORT_PARALLEL)._plan.sections
    assert sorted(cost for cost, _ in section.branches) == [1, 10, 20]
    # A residual block forks too, but its shortcut holds no work: nothing to run side by side.
    w = numpy_helper.from_array(RNG.standard_normal((3, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="stem"),
        helper.make_node("Conv", ["r", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["r", "c"], ["y"], name="residual"),
    ]
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert _session(model, ExecutionMode.ORT_PARALLEL)._plan.sections == []


def test_parallel_mode_at_one_thread_runs_every_branch_in_the_calling_thread() -> None:
    model = _inception_like()
    x = RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)
    got = _session(model, ExecutionMode.ORT_PARALLEL, threads=1).run(None, {"x": x})[0]
    want = _session(model, ExecutionMode.ORT_SEQUENTIAL, threads=1).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_an_error_in_a_branch_names_its_node() -> None:
    # Too small for conv_c's 3x3 window after conv_b: only that branch fails.
    model = _inception_like()
    model.graph.node[4].attribute.pop()  # conv_c loses its pads
    session = _session(model, ExecutionMode.ORT_PARALLEL)
    with pytest.raises(InvalidArgument, match=r"conv_c.*Conv"):
        session.run(None, {"x": RNG.standard_normal((1, 3, 2, 2)).astype(np.float32)})
