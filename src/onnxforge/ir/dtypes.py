"""ONNX element types as NumPy dtypes (ml_dtypes for bfloat16/float8/int4), and ORT's type strings."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnx_ir as ir

# ORT's spelling of element types inside "tensor(...)".
_ORT_NAMES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT16: "uint16",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.STRING: "string",
    onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.DOUBLE: "double",
    onnx.TensorProto.UINT32: "uint32",
    onnx.TensorProto.UINT64: "uint64",
    onnx.TensorProto.COMPLEX64: "complex64",
    onnx.TensorProto.COMPLEX128: "complex128",
    onnx.TensorProto.BFLOAT16: "bfloat16",
    onnx.TensorProto.FLOAT8E4M3FN: "float8e4m3fn",
    onnx.TensorProto.FLOAT8E4M3FNUZ: "float8e4m3fnuz",
    onnx.TensorProto.FLOAT8E5M2: "float8e5m2",
    onnx.TensorProto.FLOAT8E5M2FNUZ: "float8e5m2fnuz",
    onnx.TensorProto.UINT4: "uint4",
    onnx.TensorProto.INT4: "int4",
    onnx.TensorProto.FLOAT4E2M1: "float4e2m1",
}


# Element types whose raw_data is one fixed-size little-endian number per element, as NumPy reads it (on a
# little-endian host), with their NumPy dtypes.
PLAIN_RAW_TYPES: dict[int, np.dtype] = {
    int(t): np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t))
    for t in (
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.INT16,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.INT32,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.INT64,
        onnx.TensorProto.UINT64,
        onnx.TensorProto.BOOL,
    )
}


def np_dtype_for(elem_type: int | ir.DataType) -> np.dtype:
    """The NumPy dtype that holds an ONNX element type (strings are object arrays, as in onnx)."""
    return _np_dtype(int(elem_type))


@functools.cache
def _np_dtype(elem_type: int) -> np.dtype:
    # Cached: the passes and the plan ask once per value, and onnx's lookup builds a mapping each time.
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def elem_type_name(elem_type: int | ir.DataType) -> str:
    """ORT's short name of an element type, e.g. ``float`` or ``int64``."""
    return _ORT_NAMES.get(int(elem_type), onnx.TensorProto.DataType.Name(int(elem_type)).lower())


def onnx_type_string(type_: ir.TypeProtocol | None) -> str:
    """ORT's string for a value type: ``tensor(float)``, ``seq(tensor(int64))``, ``map(string,tensor(float))``."""
    if type_ is None:
        return "unknown"
    if isinstance(type_, ir.TensorType):
        return f"tensor({elem_type_name(type_.dtype)})"
    if isinstance(type_, ir.SparseTensorType):
        return f"sparse_tensor({elem_type_name(type_.dtype)})"
    if isinstance(type_, ir.SequenceType):
        return f"seq({onnx_type_string(type_.elem_type)})"
    if isinstance(type_, ir.OptionalType):
        return f"optional({onnx_type_string(type_.elem_type)})"
    # onnx-ir has no map type; maps only appear in ai.onnx.ml graphs' proto types (see proto_type_string).
    return "unknown"


def proto_type_string(type_proto: onnx.TypeProto) -> str:
    """ORT's string for a ``TypeProto``; covers maps, which onnx-ir does not model."""
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({elem_type_name(type_proto.tensor_type.elem_type)})"
    if kind == "sparse_tensor_type":
        return f"sparse_tensor({elem_type_name(type_proto.sparse_tensor_type.elem_type)})"
    if kind == "sequence_type":
        return f"seq({proto_type_string(type_proto.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({proto_type_string(type_proto.optional_type.elem_type)})"
    if kind == "map_type":
        key = elem_type_name(type_proto.map_type.key_type)
        return f"map({key},{proto_type_string(type_proto.map_type.value_type)})"
    return "unknown"
