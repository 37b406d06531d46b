"""tensor_array: protobuf-backed tensors are decoded once, read-only; strings become str objects."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

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


def test_plain_raw_data_decodes_as_onnx_ir_does() -> None:
    """The raw_data fast path gives onnx-ir's array (values, dtype, shape) for every plain type; packed and
    exotic types (int4, bfloat16, float8) still go through onnx-ir."""
    rng = np.random.default_rng(0)
    arrays = [
        rng.standard_normal((2, 3)).astype(np.float32),
        rng.standard_normal(4).astype(np.float64),
        rng.standard_normal((1, 2, 2)).astype(np.float16),
        np.array([[-3, 7]], dtype=np.int8),
        np.array([1, 255], dtype=np.uint8),
        np.array([-30000], dtype=np.int16),
        np.array([65535], dtype=np.uint16),
        np.array([-(2**31)], dtype=np.int32),
        np.array([2**32 - 1], dtype=np.uint32),
        np.array([[-(2**62)], [5]], dtype=np.int64),
        np.array([2**64 - 1], dtype=np.uint64),
        np.array([True, False, True], dtype=np.bool_),
        np.zeros((0, 3), dtype=np.float32),
        np.array(2.5, dtype=np.float32),
    ]
    for array in arrays:
        proto = onnx.numpy_helper.from_array(array, "t")
        ours = tensor_array(ir.serde.TensorProtoTensor(proto))
        theirs = ir.serde.TensorProtoTensor(proto).numpy()
        assert ours.dtype == theirs.dtype == array.dtype
        assert ours.shape == theirs.shape == array.shape
        np.testing.assert_array_equal(ours, array)
        assert not ours.flags.writeable
    packed = onnx.helper.make_tensor("q", onnx.TensorProto.INT4, [3], [1, -2, 7])
    assert tensor_array(ir.serde.TensorProtoTensor(packed)).astype(np.int8).tolist() == [1, -2, 7]


def test_raw_data_of_the_wrong_size_raises_value_error() -> None:
    proto = onnx.numpy_helper.from_array(np.arange(6, dtype=np.float32), "t")
    proto.dims[:] = [4]
    with pytest.raises(ValueError):
        tensor_array(ir.serde.TensorProtoTensor(proto))
