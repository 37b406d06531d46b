"""tensor_array: protobuf-backed tensors are decoded once, read-only; strings become str objects."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from onnxforge.ir.arrays import tensor_array


def _proto_tensor(array: np.ndarray, raw: bool) -> ir.TensorProtocol:
    proto = onnx.helper.make_tensor(
        "t", onnx.helper.np_dtype_to_tensor_dtype(array.dtype), array.shape, array.ravel().tolist()
    )
    if raw:
        proto = onnx.numpy_helper.from_array(array, "t")
    return ir.serde.TensorProtoTensor(proto)


def test_protobuf_tensor_decoded_once_and_read_only() -> None:
    for raw in (True, False):
        tensor = _proto_tensor(np.arange(6, dtype=np.float32).reshape(2, 3), raw)
        first = tensor_array(tensor)
        assert tensor_array(tensor) is first
        assert not first.flags.writeable
        np.testing.assert_array_equal(first, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_in_memory_tensor_returns_its_array() -> None:
    array = np.ones(3, dtype=np.int64)
    assert tensor_array(ir.Tensor(array)) is array
    assert array.flags.writeable


def test_strings_become_str_objects() -> None:
    proto = onnx.helper.make_tensor("s", onnx.TensorProto.STRING, [2], [b"a", b"bc"])
    array = tensor_array(ir.serde.TensorProtoTensor(proto))
    assert array.dtype == object and array.tolist() == ["a", "bc"]
