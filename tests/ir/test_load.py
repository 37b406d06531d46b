"""Loading untrusted files: external data must stay in the model folder and inside its file."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge import InferenceSession, InvalidGraph, NoSuchFile
from onnxforge.ir.load import check_model


def _model_with_external(tmp_path, location: str, offset: int = 0, length: int | None = None) -> str:
    tensor = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_external_data_inside_the_folder_loads(tmp_path) -> None:
    (tmp_path / "weights.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    (y,) = InferenceSession(_model_with_external(tmp_path, "weights.bin", length=16)).run(None, {})
    np.testing.assert_array_equal(y, np.arange(4, dtype=np.float32))


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location: str) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\0" * 16)
    with pytest.raises(InvalidGraph, match="outside the model folder"):
        InferenceSession(_model_with_external(inner, location))


def test_external_data_missing_file(tmp_path) -> None:
    with pytest.raises(NoSuchFile, match="nothere.bin"):
        InferenceSession(_model_with_external(tmp_path, "nothere.bin"))


def test_external_data_past_end_of_file(tmp_path) -> None:
    (tmp_path / "short.bin").write_bytes(b"\0" * 8)
    with pytest.raises(InvalidGraph, match="runs past the end"):
        InferenceSession(_model_with_external(tmp_path, "short.bin", offset=0, length=16))


def test_external_data_from_bytes_has_no_folder(tmp_path) -> None:
    path = _model_with_external(tmp_path, "weights.bin")
    with pytest.raises(InvalidGraph, match="not loaded from a file"):
        InferenceSession(open(path, "rb").read())


def test_initializer_whose_dims_disagree_with_its_data(tmp_path) -> None:
    tensor = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    del tensor.dims[:]
    tensor.dims.extend([1000, 1000])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InvalidGraph, match="'w'"):
        InferenceSession(model.SerializeToString())


def test_a_model_file_parses_through_the_memory_map_as_onnx_loads_it(tmp_path) -> None:
    import onnx

    from onnxforge.ir.load import load_model_proto

    weights = numpy_helper.from_array(np.arange(5000, dtype=np.float32).reshape(50, 100), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 50])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 100])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    proto, folder = load_model_proto(path)
    assert proto == onnx.load(str(path)) and folder == tmp_path
    # The map is closed: the weights the session reads are protobuf's own copy.
    x = np.ones((1, 50), np.float32)
    np.testing.assert_allclose(
        InferenceSession(str(path)).run(None, {"x": x})[0], x @ np.arange(5000, dtype=np.float32).reshape(50, 100)
    )


def test_an_empty_file_is_not_a_model(tmp_path) -> None:
    from onnxforge import InvalidProtobuf

    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(InvalidProtobuf, match="no graph"):
        InferenceSession(str(path))


def _external_tensor(location: str) -> TensorProto:
    tensor = numpy_helper.from_array(np.arange(4, dtype=np.float32), "c")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    return tensor


@pytest.mark.parametrize("where", ["constant", "constant_in_if_branch", "untyped_attribute"])
def test_external_data_in_node_attributes_is_checked_too(tmp_path, where: str) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\0" * 16)
    constant = helper.make_node("Constant", [], ["c"], value=_external_tensor("../outside.bin"))
    if where == "untyped_attribute":  # IR-3 era files may leave AttributeProto.type unset
        constant.attribute[0].type = 0
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    if where == "constant_in_if_branch":
        branch = helper.make_graph(
            [constant, helper.make_node("Identity", ["c"], ["y_branch"])],
            "b",
            [],
            [helper.make_tensor_value_info("y_branch", TensorProto.FLOAT, [4])],
        )
        nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)]
        inputs = [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])]
    else:
        nodes, inputs = [constant, helper.make_node("Identity", ["c"], ["y"])], []
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [out]), opset_imports=[helper.make_opsetid("", 17)])
    path = inner / "model.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InvalidGraph, match="'c' points at external data '../outside.bin'.*outside the model folder"):
        InferenceSession(str(path))


def _ir3_model_with_initializer_input() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "k"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("k", TensorProto.FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.ones(2, np.float32), "k")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)], ir_version=3)


def test_below_ir4_initializer_inputs_leave_the_inputs_only_when_asked() -> None:
    data = _ir3_model_with_initializer_input().SerializeToString()

    as_constants = check_model(data).to_ir(initializers_as_constants=True)
    as_written = check_model(data).to_ir()

    assert [v.name for v in as_constants.graph.inputs] == ["x"]
    k = as_constants.graph.initializers["k"]
    assert k.dtype == ir.DataType.FLOAT and tuple(k.shape) == (2,)
    np.testing.assert_array_equal(k.const_value.numpy(), [1.0, 1.0])
    assert [v.name for v in as_written.graph.inputs] == ["x", "k"]


def test_a_callers_model_proto_is_never_edited() -> None:
    model = _ir3_model_with_initializer_input()

    check_model(model).to_ir(initializers_as_constants=True)

    assert [v.name for v in model.graph.input] == ["x", "k"]
    (y,) = InferenceSession(model).run(None, {"x": np.float32([1, 2])})
    np.testing.assert_array_equal(y, [2.0, 3.0])
