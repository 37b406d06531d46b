"""BitCast (opset 26): reinterpret each element's bits as another type of the same bit width.

``y = bits_as(to, bits(x))`` element-wise, with the shape unchanged and no value conversion (unlike Cast).
Widths: bool, (u)int8 and the 8-bit floats are 8 bits; (u)int16, float16 and bfloat16 16; (u)int32 and float
32; (u)int64, double and complex64 64; complex128 128; int4, uint4 and float4e2m1 4; int2 and uint2 2.

ml_dtypes keeps each sub-byte element in the low bits of its own byte (int4 -1 is ``0x0F``), so equal-width
sub-byte types reinterpret with a plain NumPy view too. Bytes are little endian, as the spec requires. A bool
result is normalised to 0/1 (any non-zero byte is true) so later NumPy ops see canonical booleans.
"""

from __future__ import annotations

import sys

import ml_dtypes
import numpy as np
from onnx import TensorProto

from onnxforge._errors import InvalidArgument
from onnxforge.ir.dtypes import np_dtype_for
from onnxforge.runtime.registry import kernel

# Element widths in bits where they differ from itemsize * 8 (ml_dtypes' sub-byte types use a whole byte).
_SUB_BYTE_BITS: dict[np.dtype, int] = {
    np.dtype(ml_dtypes.int4): 4,
    np.dtype(ml_dtypes.uint4): 4,
    np.dtype(ml_dtypes.float4_e2m1fn): 4,
    np.dtype(ml_dtypes.int2): 2,
    np.dtype(ml_dtypes.uint2): 2,
    np.dtype(ml_dtypes.float6_e2m3fn): 6,
    np.dtype(ml_dtypes.float6_e3m2fn): 6,
}


def bit_width(dtype: np.dtype) -> int:
    """How many bits one element of ``dtype`` has in ONNX."""
    return _SUB_BYTE_BITS.get(np.dtype(dtype), np.dtype(dtype).itemsize * 8)


def bitcast_array(x: np.ndarray, to: int) -> np.ndarray:
    """``x``'s bits reinterpreted as ONNX element type ``to`` (same width required)."""
    if to == TensorProto.STRING or x.dtype == object or x.dtype.kind in "US":
        raise InvalidArgument("BitCast does not support strings")
    try:
        target = np_dtype_for(to)
    except Exception:
        raise InvalidArgument(f"BitCast: unsupported target type {to}") from None
    source_bits, target_bits = bit_width(x.dtype), bit_width(target)
    if source_bits != target_bits:
        raise InvalidArgument(
            f"BitCast needs types of one bit width: the input is {x.dtype} ({source_bits} bits), "
            f"the target {target} ({target_bits} bits)"
        )
    if x.dtype == target:
        return x
    source = x  # equal itemsizes: a view works on any layout, 0-d included
    if sys.byteorder != "little" or source.dtype.byteorder == ">":
        raise InvalidArgument("BitCast runs on little-endian data only")
    if target == np.bool_:
        return source.view(np.uint8) != 0
    return source.view(target)


@kernel("BitCast", since=26)
def BitCast(input: np.ndarray, *, to: int) -> np.ndarray:
    return bitcast_array(input, int(to))
