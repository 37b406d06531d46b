"""InferenceSession: the ORT API surface, and every bad-input case raising ORT's class with expected vs got."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxforge
from onnxforge import (
    Fail,
    GraphOptimizationLevel,
    InferenceSession,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
    NotImplemented,
    RunOptions,
    SessionOptions,
)
from tests.runtime.conftest import affine_reference, make_model


def test_run_matches_numpy_and_returns_all_outputs(affine_model: onnx.ModelProto) -> None:
    sess = InferenceSession(affine_model.SerializeToString())
    x = np.array([[1, 2, 3], [-4, 0, 1]], dtype=np.float32)
    y, xw = sess.run(None, {"x": x})
    np.testing.assert_allclose(y, affine_reference(x), rtol=1e-6)
    assert y.dtype == np.float32 and y.shape == (2, 2)
    assert xw.shape == (2, 2)
    (only_y,) = sess.run(["y"], {"x": x})
    np.testing.assert_array_equal(only_y, y)
    assert len(sess.run([], {"x": x})) == 2


def test_inputs_outputs_and_overridable_initializers(affine_model: onnx.ModelProto) -> None:
    sess = InferenceSession(affine_model)
    assert [(a.name, a.type, a.shape) for a in sess.get_inputs()] == [("x", "tensor(float)", ["batch", 3])]
    assert [a.name for a in sess.get_overridable_initializers()] == ["b"]
    assert [(a.name, a.shape) for a in sess.get_outputs()] == [("y", ["batch", 2]), ("xw", ["batch", 2])]
    assert repr(sess.get_inputs()[0]) == "NodeArg(name='x', type='tensor(float)', shape=['batch', 3])"


def test_an_input_of_unknown_rank_has_shape_like_onnxruntime_and_rank_known_false() -> None:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "s"], ["y"])],
        "g",
        [
            onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None),
            onnx.helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, []),
        ],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    inputs = InferenceSession(model.SerializeToString()).get_inputs()
    assert [(a.name, a.shape, a.rank_known) for a in inputs] == [("x", [], False), ("s", [], True)]
    ort = pytest.importorskip("onnxruntime")
    theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).get_inputs()
    assert [(a.name, a.shape) for a in theirs] == [(a.name, a.shape) for a in inputs]


def test_overridable_initializer_can_be_fed(affine_model: onnx.ModelProto) -> None:
    sess = InferenceSession(affine_model)
    x = np.ones((1, 3), np.float32)
    b = np.array([10.0, 20.0], np.float32)
    (y, _) = sess.run(None, {"x": x, "b": b})
    np.testing.assert_allclose(y, affine_reference(x, b), rtol=1e-6)


def test_modelmeta(affine_model: onnx.ModelProto) -> None:
    meta = InferenceSession(affine_model).get_modelmeta()
    assert meta.producer_name == "onnxforge-tests"
    assert meta.graph_name == "test_graph"
    assert meta.domain == "ai.onnxforge.test"
    assert meta.description == "affine test model"
    assert meta.graph_description == "graph doc"
    assert meta.version == 7
    assert meta.custom_metadata_map == {"author": "tests"}


def test_providers_and_unavailable_provider_warns(affine_model: onnx.ModelProto) -> None:
    with pytest.warns(UserWarning, match="CUDAExecutionProvider.*Available providers: 'CPUExecutionProvider'"):
        sess = InferenceSession(affine_model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert sess.get_provider_options() == {"CPUExecutionProvider": {}}
    assert onnxforge.get_available_providers() == ["CPUExecutionProvider"]
    assert onnxforge.get_device() == "CPU"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        InferenceSession(affine_model, providers=[("CPUExecutionProvider", {})])


def test_session_options_fields_and_config() -> None:
    opts = SessionOptions()
    assert opts.graph_optimization_level == GraphOptimizationLevel.ORT_ENABLE_ALL
    assert int(GraphOptimizationLevel.ORT_ENABLE_ALL) == 99 and int(GraphOptimizationLevel.ORT_ENABLE_LAYOUT) == 3
    opts.add_session_config_entry("session.use_env_allocators", "1")
    assert opts.get_session_config_entry("session.use_env_allocators") == "1"
    with pytest.raises(InvalidArgument, match="no_such_key"):
        opts.get_session_config_entry("no_such_key")


def test_free_dimension_override_shows_in_inputs_and_is_enforced(affine_model: onnx.ModelProto) -> None:
    opts = SessionOptions()
    opts.add_free_dimension_override_by_name("batch", 4)
    sess = InferenceSession(affine_model, sess_options=opts)
    assert sess.get_inputs()[0].shape == [4, 3]
    sess.run(None, {"x": np.zeros((4, 3), np.float32)})
    with pytest.raises(InvalidArgument, match=r"index: 0 Got: 2 Expected: 4"):
        sess.run(None, {"x": np.zeros((2, 3), np.float32)})


def test_add_initializer_replaces_weights(affine_model: onnx.ModelProto) -> None:
    opts = SessionOptions()
    opts.add_initializer("W", np.zeros((3, 2), np.float32))
    sess = InferenceSession(affine_model, sess_options=opts)
    (y, xw) = sess.run(None, {"x": np.ones((1, 3), np.float32)})
    np.testing.assert_array_equal(xw, np.zeros((1, 2), np.float32))
    np.testing.assert_allclose(y, [[0.5, 0.0]])


def test_nested_list_input_is_converted_with_declared_dtype(affine_model: onnx.ModelProto) -> None:
    sess = InferenceSession(affine_model)
    (y, _) = sess.run(None, {"x": [[1, 2, 3]]})
    np.testing.assert_allclose(y, affine_reference(np.array([[1, 2, 3]], np.float32)), rtol=1e-6)


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        ({}, r"Required inputs \(\['x'\]\) are missing"),
        ({"x": np.zeros((1, 3), np.float32), "z": np.zeros(1)}, "Invalid input name: z"),
        (
            {"x": np.zeros((1, 3), np.float64)},
            r"input 'x'.*Actual: \(tensor\(float64\)\) , expected: \(tensor\(float\)\)",
        ),
        ({"x": np.zeros((1, 3, 1), np.float32)}, "Invalid rank for input: x Got: 3 Expected: 2"),
        ({"x": np.zeros((1, 4), np.float32)}, r"(?s)invalid dimensions for input: x.*index: 1 Got: 4 Expected: 3"),
    ],
)
def test_bad_feeds_raise_invalid_argument(affine_model: onnx.ModelProto, feed: dict, message: str) -> None:
    sess = InferenceSession(affine_model)
    with pytest.raises(InvalidArgument, match=message):
        sess.run(None, feed)


def test_unknown_output_name(affine_model: onnx.ModelProto) -> None:
    with pytest.raises(InvalidArgument, match="Invalid output name: nope"):
        InferenceSession(affine_model).run(["nope"], {"x": np.zeros((1, 3), np.float32)})


def test_missing_file_and_not_protobuf(tmp_path) -> None:
    with pytest.raises(NoSuchFile, match="missing.onnx"):
        InferenceSession(str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe not a protobuf at all \x00\x01")
    with pytest.raises(InvalidProtobuf, match="junk.onnx"):
        InferenceSession(str(junk))


def test_too_new_ir_version(affine_model: onnx.ModelProto) -> None:
    affine_model.ir_version = onnx.IR_VERSION + 5
    with pytest.raises(InvalidGraph, match=f"IR version {onnx.IR_VERSION + 5}"):
        InferenceSession(affine_model.SerializeToString())


def test_unknown_op_fails_at_load_naming_op_domain_opset() -> None:
    model = make_model(
        [helper.make_node("FrobnicateX", ["x"], ["y"], name="frob")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(NotImplemented, match=r"FrobnicateX\(17\).*'frob'.*ai\.onnx"):
        InferenceSession(model)


def test_type_the_op_does_not_allow_is_invalid_graph() -> None:
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"], name="relu_on_strings")],
        [helper.make_tensor_value_info("x", TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, [1])],
    )
    with pytest.raises(InvalidGraph, match="relu_on_strings|Relu"):
        InferenceSession(model)


def test_node_failure_at_run_names_node_op_and_opset() -> None:
    model = make_model(
        [helper.make_node("MatMul", ["a", "b"], ["c"], name="bad_matmul")],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, None),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)],
    )
    sess = InferenceSession(model)
    # ORT says Fail here; a kernel that knows the inputs are at fault may say InvalidArgument.
    with pytest.raises((Fail, InvalidArgument), match=r"node 'bad_matmul' \(ai\.onnx::MatMul, opset 17\).*3.*4"):
        sess.run(None, {"a": np.zeros((2, 3), np.float32), "b": np.zeros((4, 5), np.float32)})


def test_unsorted_graph_is_sorted(affine_model: onnx.ModelProto) -> None:
    nodes = list(affine_model.graph.node)
    del affine_model.graph.node[:]
    affine_model.graph.node.extend(reversed(nodes))
    x = np.ones((2, 3), np.float32)
    (y, _) = InferenceSession(affine_model).run(None, {"x": x})
    np.testing.assert_allclose(y, affine_reference(x), rtol=1e-6)


def test_terminate_flag_stops_the_run(affine_model: onnx.ModelProto) -> None:
    run_options = RunOptions()
    run_options.terminate = True
    with pytest.raises(Fail, match="terminate"):
        InferenceSession(affine_model).run(None, {"x": np.ones((1, 3), np.float32)}, run_options)


def test_profiling_writes_kernel_time_events(affine_model: onnx.ModelProto, tmp_path) -> None:
    import json

    opts = SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "prof")
    sess = InferenceSession(affine_model, sess_options=opts)
    sess.run(None, {"x": np.ones((5, 3), np.float32)})
    events = json.loads(open(sess.end_profiling()).read())
    by_name = {e["name"]: e for e in events}
    assert set(by_name) == {"matmul_kernel_time", "add_kernel_time", "relu_kernel_time"}
    assert by_name["matmul_kernel_time"]["args"]["op_name"] == "MatMul"
    assert by_name["matmul_kernel_time"]["args"]["input_type_shape"] == [{"float32": [5, 3]}, {"float32": [3, 2]}]
    assert all(e["dur"] >= 0 for e in events)


def test_many_threads_share_one_session_bit_identically() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64)).astype(np.float32)
    nodes, prev = [], "x"
    for i in range(8):
        nodes.append(helper.make_node("MatMul", [prev, "W"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i}"]))
        prev = f"t{i}"
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32, 64])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [32, 64])],
        [onnx.numpy_helper.from_array(w, "W")],
    )
    sess = InferenceSession(model)
    inputs = [rng.standard_normal((32, 64)).astype(np.float32) for _ in range(8)]
    expected = [sess.run(None, {"x": x})[0] for x in inputs]
    results: dict[int, list[np.ndarray]] = {}

    def worker(k: int) -> None:
        results[k] = [sess.run(None, {"x": inputs[(k + j) % 8]})[0] for j in range(20)]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, outs in results.items():
        for j, out in enumerate(outs):
            assert np.array_equal(out, expected[(k + j) % 8])


def _if_model() -> onnx.ModelProto:
    branch = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="inner_relu")],
        "branch",
        [],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2])],
    )
    return make_model(
        [helper.make_node("If", ["c"], ["y"], name="outer_if", then_branch=branch, else_branch=branch)],
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )


def test_profiling_and_terminate_reach_subgraph_nodes(tmp_path) -> None:
    import json

    opts = SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "prof")
    sess = InferenceSession(_if_model(), sess_options=opts)
    (y,) = sess.run(None, {"c": np.array(True), "x": np.array([-1.0, 2.0], np.float32)})
    np.testing.assert_array_equal(y, [0.0, 2.0])
    names = {e["name"] for e in json.loads(open(sess.end_profiling()).read())}
    assert names == {"outer_if_kernel_time", "inner_relu_kernel_time"}

    class StopOnSecondLook(RunOptions):
        """The outer If starts; the flag is seen set when the branch's first node is about to run."""

        looks = 0

        @property
        def terminate(self) -> bool:
            StopOnSecondLook.looks += 1
            return StopOnSecondLook.looks > 2  # look 1: run() itself, look 2: before the If

        @terminate.setter
        def terminate(self, value: bool) -> None:
            pass

    with pytest.raises(Fail, match="terminate"):
        InferenceSession(_if_model()).run(None, {"c": np.array(True), "x": np.ones(2, np.float32)}, StopOnSecondLook())
    assert StopOnSecondLook.looks == 3


def test_missing_required_attribute_fails_at_load() -> None:
    model = make_model(
        [helper.make_node("Cast", ["x"], ["y"], name="cast_without_to")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(InvalidGraph, match=r"(?s)Cast.*cast_without_to.*attribute to"):
        InferenceSession(model)


def test_output_that_is_a_weight_is_writable() -> None:
    model = make_model(
        [helper.make_node("Identity", ["w"], ["y"])],
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [onnx.numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "w")],
    )
    sess = InferenceSession(model)
    (first,) = sess.run(None, {})
    first[0] = 100.0
    (second,) = sess.run(None, {})
    np.testing.assert_array_equal(second, [1.0, 2.0])


def test_input_without_an_element_type_is_invalid_graph() -> None:
    untyped = helper.make_tensor_value_info("x", TensorProto.UNDEFINED, [1])
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [untyped],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(InvalidGraph, match="(?i)type"):
        InferenceSession(model)


def _shape_reshape_model(dims: list) -> onnx.ModelProto:
    """y = Reshape(x, Shape(Relu(x))) * 2: a Shape node the optimizer folds when the dims are known."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Shape", ["r"], ["s"]),
            helper.make_node("Reshape", ["x", "s"], ["t"]),
            helper.make_node("Mul", ["t", "two"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_type_check_shapes_reach_the_optimizer() -> None:
    """The shapes inferred while checking types let the optimizer fold Shape; the numbers stay the same."""
    model = _shape_reshape_model([2, 3])
    sess = InferenceSession(model.SerializeToString())
    assert "Shape" not in [info.op_type for info in sess._plan.infos]
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], x * 2)


def test_free_dimension_overrides_still_reach_the_optimizer() -> None:
    """With overrides the type check's shapes are not those of the model the optimizer gets: it infers its own."""
    options = SessionOptions()
    options.add_free_dimension_override_by_name("N", 4)
    sess = InferenceSession(_shape_reshape_model(["N", 3]).SerializeToString(), options)
    assert "Shape" not in [info.op_type for info in sess._plan.infos]
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], x * 2)
    plain = InferenceSession(_shape_reshape_model(["N", 3]).SerializeToString())
    assert "Shape" in [info.op_type for info in plain._plan.infos]


def test_check_types_returns_the_inferred_shapes() -> None:
    from onnxforge.runtime.typecheck import check_types

    inferred = check_types(_shape_reshape_model([2, 3]), "test")
    assert inferred is not None
    shapes = {info.name: [d.dim_value for d in info.type.tensor_type.shape.dim] for info in inferred.graph.value_info}
    assert shapes["r"] == [2, 3] and shapes["t"] == [2, 3]


def test_session_creation_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    assert gc.isenabled()
    InferenceSession(_shape_reshape_model([2, 3]).SerializeToString())
    assert gc.isenabled()
    gc.disable()
    try:
        InferenceSession(_shape_reshape_model([2, 3]).SerializeToString())
        assert not gc.isenabled()
    finally:
        gc.enable()
