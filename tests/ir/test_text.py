"""Names that are not UTF-8 (protobuf hands them over as bytes) fail as InvalidProtobuf naming the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxforge import InferenceSession, InvalidProtobuf
from onnxforge.ir.text import non_utf8_field


def _model_bytes(op_type: str = "Relu", graph_name: str = "g", output: str = "y") -> bytes:
    graph = helper.make_graph(
        [helper.make_node(op_type, ["x"], [output])],
        graph_name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def _corrupt(data: bytes, text: str) -> bytes:
    """``data`` with the first byte of each occurrence of ``text`` replaced by 0xC3 (a lone lead byte)."""
    return data.replace(text.encode(), b"\xc3" + text[1:].encode())


@pytest.mark.parametrize(
    ("text", "where"),
    [("Qelu", "node 0 op_type"), ("gname", "graph name")],
)
def test_a_name_that_is_not_utf8_is_invalid_protobuf(tmp_path: Path, text: str, where: str) -> None:
    kwargs = {"Qelu": {"op_type": "Qelu"}, "gname": {"graph_name": "gname"}}[text]
    data = _corrupt(_model_bytes(**kwargs), text)
    proto = onnx.ModelProto()
    proto.ParseFromString(data)
    assert where in (non_utf8_field(proto) or "")
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(InvalidProtobuf, match=r"bad\.onnx.*not valid UTF-8"):
        InferenceSession(str(path)).run(None, {"x": np.ones(2, np.float32)})


def test_a_valid_model_has_no_undecodable_name() -> None:
    proto = onnx.ModelProto()
    proto.ParseFromString(_model_bytes())
    assert non_utf8_field(proto) is None


def test_an_undecodable_value_name_nothing_trips_on_still_runs(tmp_path: Path) -> None:
    """The check runs only when a name breaks something (see ir/text.py): here the output is still computed."""
    data = _corrupt(_model_bytes(output="youtput"), "youtput")
    proto = onnx.ModelProto()
    proto.ParseFromString(data)
    assert "graph output name" in (non_utf8_field(proto) or "")
    path = tmp_path / "odd.onnx"
    path.write_bytes(data)
    (y,) = InferenceSession(str(path)).run(None, {"x": np.array([-1.0, 2.0], np.float32)})
    np.testing.assert_array_equal(y, [0.0, 2.0])


def test_an_undecodable_producer_name_is_invalid_protobuf(tmp_path: Path) -> None:
    proto = onnx.ModelProto()
    proto.ParseFromString(_model_bytes())
    proto.producer_name = "zproducer"
    data = _corrupt(proto.SerializeToString(), "zproducer")
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(InvalidProtobuf, match="model producer_name"):
        InferenceSession(str(path))
