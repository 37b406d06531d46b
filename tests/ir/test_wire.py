"""Big initializers read straight from the file into arrays: the same values as protobuf's, and anything
unusual left to protobuf."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge import InferenceSession, InvalidGraph, InvalidProtobuf
from onnxforge.ir.load import check_model
from onnxforge.ir.wire import ASIDE_MIN_ELEMENTS, parse_with_weights_aside

_BIG = ASIDE_MIN_ELEMENTS + 1


def _tensors() -> list[onnx.TensorProto]:
    rng = np.random.default_rng(0)
    arrays = {
        "w_f32": rng.standard_normal((_BIG, 2)).astype(np.float32),
        "w_f16": rng.standard_normal(_BIG).astype(np.float16),
        "w_i64": rng.integers(-(2**40), 2**40, _BIG, dtype=np.int64),
        "w_u8": rng.integers(0, 255, (_BIG,), dtype=np.uint8),
        "w_bool": rng.integers(0, 2, _BIG).astype(bool),
        "small": np.arange(6, dtype=np.float32).reshape(2, 3),
    }
    tensors = [numpy_helper.from_array(array, name) for name, array in arrays.items()]
    tensors[0].doc_string = "the first weight"
    return tensors


def _model(tensors: list[onnx.TensorProto]) -> onnx.ModelProto:
    nodes = [helper.make_node("Identity", [t.name], [f"out_{t.name}"]) for t in tensors]
    outputs = [helper.make_tensor_value_info(f"out_{t.name}", t.data_type, list(t.dims)) for t in tensors]
    graph = helper.make_graph(nodes, "g", [], outputs, tensors)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _save(model: onnx.ModelProto | bytes, tmp_path: Path) -> str:
    path = tmp_path / "model.onnx"
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    return str(path)


def test_big_initializers_come_as_read_only_arrays_with_protobufs_values(tmp_path: Path) -> None:
    tensors = _tensors()
    proto, aside = parse_with_weights_aside(_save(_model(tensors), tmp_path))
    assert sorted(aside) == ["w_bool", "w_f16", "w_f32", "w_i64", "w_u8"]
    for tensor in tensors:
        if tensor.name in aside:
            want = numpy_helper.to_array(tensor)
            got = aside[tensor.name]
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            assert not got.flags.writeable and got.flags.aligned and got.flags.c_contiguous
    parsed = {t.name: t for t in proto.graph.initializer}
    assert [t.name for t in proto.graph.initializer] == [t.name for t in tensors]  # order and names kept
    assert parsed["w_f32"].raw_data == b"" and list(parsed["w_f32"].dims) == [_BIG, 2]
    assert parsed["w_f32"].doc_string == "the first weight"
    assert parsed["small"].raw_data == tensors[-1].raw_data  # small ones stay in the protobuf
    assert [n.op_type for n in proto.graph.node] == ["Identity"] * len(tensors)


def test_session_runs_on_the_arrays_set_aside(tmp_path: Path) -> None:
    tensors = _tensors()
    path = _save(_model(tensors), tmp_path)
    checked = check_model(path)
    assert "w_f32" in checked.aside
    model = checked.to_ir()
    assert model.graph.initializers["w_f32"].const_value.numpy() is checked.aside["w_f32"]
    assert model.graph.initializers["w_f32"].const_value.doc_string == "the first weight"
    outputs = InferenceSession(path).run(None, {})
    for tensor, got in zip(tensors, outputs):
        np.testing.assert_array_equal(got, numpy_helper.to_array(tensor))


def test_typed_data_duplicates_and_size_mismatches_are_left_to_protobuf(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    both = numpy_helper.from_array(rng.standard_normal(_BIG).astype(np.float32), "both")
    both.float_data.append(1.0)  # invalid (two value fields): the engine's usual error, not ours
    twice = [numpy_helper.from_array(np.full(_BIG, v, np.float32), "twice") for v in (1.0, 2.0)]
    short = numpy_helper.from_array(np.ones(_BIG, np.float32), "short")
    short.dims[0] = _BIG + 7  # raw_data no longer matches the dims
    proto, aside = parse_with_weights_aside(_save(_model([both, *twice, short]), tmp_path))
    assert aside == {}
    assert [t.raw_data for t in proto.graph.initializer] == [
        both.raw_data,
        twice[0].raw_data,
        twice[1].raw_data,
        short.raw_data,
    ]
    path = _save(_model([short]), tmp_path)
    with pytest.raises(InvalidGraph):
        InferenceSession(path)


def test_a_truncated_file_is_invalid_protobuf(tmp_path: Path) -> None:
    data = _model(_tensors()).SerializeToString()
    path = _save(data[: len(data) - 1000], tmp_path)
    with pytest.raises(InvalidProtobuf, match="model.onnx"):
        InferenceSession(path)


def test_subgraph_initializers_and_text_before_the_graph_are_kept(tmp_path: Path) -> None:
    """Only the main graph's initializers go aside; a subgraph's stay in its attribute."""
    inner_weight = numpy_helper.from_array(np.full(_BIG, 3.0, np.float32), "inner_w")
    branch = helper.make_graph(
        [helper.make_node("Identity", ["inner_w"], ["r"])],
        "branch",
        [],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, [_BIG])],
        [inner_weight],
    )
    outer_weight = numpy_helper.from_array(np.full(_BIG, 5.0, np.float32), "outer_w")
    graph = helper.make_graph(
        [
            helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch),
            helper.make_node("Add", ["y", "outer_w"], ["z"]),
        ],
        "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [_BIG])],
        [outer_weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8, doc_string="d" * 300)
    path = _save(model, tmp_path)
    proto, aside = parse_with_weights_aside(path)
    assert list(aside) == ["outer_w"] and proto.doc_string == "d" * 300
    assert proto.graph.node[0].attribute[0].g.initializer[0].raw_data == inner_weight.raw_data
    (z,) = InferenceSession(path).run(None, {"c": np.array(True)})
    np.testing.assert_array_equal(z, np.full(_BIG, 8.0, np.float32))
