"""Tensors as the NumPy arrays the engine's kernels take, decoded once per tensor.

A protobuf-backed onnx-ir tensor (``TensorProtoTensor``) decodes its bytes on every ``numpy()`` call
(~7 us each), and creating a session reads the same weights and shared constants many times: constant
folding, every fusion's and no-op rule's tests, each fixed-point round, then the plan. The first decoded
array is kept in the tensor's ``meta`` (in memory only, never serialized) and handed out after that.

The kept array is read-only, so no reader can change what the next one gets. Most already were (those
viewing the protobuf's raw bytes), so every reader (kernels at folding time, the plan's fusions) already
copies before writing. ``ir.Tensor`` holds its array and returns it as is, so it needs no cache.

The first decode of the common case, plain numbers in ``raw_data`` on a little-endian host, is done here: the
same ``np.frombuffer(raw_data).reshape(dims)`` as onnx-ir's ``TensorProtoTensor.numpy()`` without its checks
for packed and exotic types (1.5 instead of 4.5 us; a session build decodes every small constant, BatchNorm
parameter and bias once: hundreds per model). Everything else goes through onnx-ir.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnx_ir as ir

from onnxforge.ir.dtypes import PLAIN_RAW_TYPES

# Tensor.meta key of the decoded array.
ARRAY_KEY = "onnxforge.array"
_LITTLE_ENDIAN = sys.byteorder == "little"


def tensor_array(tensor: ir.TensorProtocol) -> np.ndarray:
    """The tensor's array; strings as ``str`` objects (the engine's kernels take them so)."""
    kind = type(tensor)
    meta = None if kind is ir.Tensor else getattr(tensor, "meta", None)
    if meta is not None:
        cached = meta.data.get(ARRAY_KEY)
        if cached is not None:
            return cached
    array = _plain_raw_array(tensor) if kind is ir.serde.TensorProtoTensor else None
    if array is None:
        array = tensor.numpy()
        if tensor.dtype == ir.DataType.STRING:
            flat = [s.decode("utf-8") if isinstance(s, bytes) else s for s in array.ravel()]
            return np.array(flat, dtype=object).reshape(array.shape)
    if meta is not None:
        if array.flags.writeable:  # decoded from typed fields (float_data...) into a fresh array we own
            array.flags.writeable = False
        meta[ARRAY_KEY] = array
    return array


def _plain_raw_array(tensor: ir.serde.TensorProtoTensor) -> np.ndarray | None:
    """The array over a protobuf tensor's ``raw_data`` when it holds plain little-endian numbers, else None.
    A size that does not match the dims raises ValueError, as onnx-ir's decoding does."""
    proto: onnx.TensorProto = tensor.raw
    dtype = PLAIN_RAW_TYPES.get(proto.data_type)
    if dtype is None or not _LITTLE_ENDIAN or proto.data_location == onnx.TensorProto.EXTERNAL:
        return None
    if not proto.HasField("raw_data"):
        return None
    return np.frombuffer(proto.raw_data, dtype).reshape(tuple(proto.dims))
