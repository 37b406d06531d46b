"""Tensors as the NumPy arrays the engine's kernels take, decoded once per tensor.

A protobuf-backed onnx-ir tensor (``TensorProtoTensor``) decodes its bytes on every ``numpy()`` call
(~7 us each), and creating a session reads the same weights and shared constants many times: constant
folding, every fusion's and no-op rule's tests, each fixed-point round, then the plan. The first decoded
array is kept in the tensor's ``meta`` (in memory only, never serialized) and handed out after that.

The kept array is read-only, so no reader can change what the next one gets. Most already were (those
viewing the protobuf's raw bytes), so every reader (kernels at folding time, the plan's fusions) already
copies before writing. ``ir.Tensor`` holds its array and returns it as is, so it needs no cache.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

# Tensor.meta key of the decoded array.
ARRAY_KEY = "onnxforge.array"


def tensor_array(tensor: ir.TensorProtocol) -> np.ndarray:
    """The tensor's array; strings as ``str`` objects (the engine's kernels take them so)."""
    meta = None if type(tensor) is ir.Tensor else getattr(tensor, "meta", None)
    if meta is not None:
        cached = meta.data.get(ARRAY_KEY)
        if cached is not None:
            return cached
    array = tensor.numpy()
    if tensor.dtype == ir.DataType.STRING:
        flat = [s.decode("utf-8") if isinstance(s, bytes) else s for s in array.ravel()]
        return np.array(flat, dtype=object).reshape(array.shape)
    if meta is not None:
        if array.flags.writeable:  # decoded from typed fields (float_data...) into a fresh array we own
            array.flags.writeable = False
        meta[ARRAY_KEY] = array
    return array
