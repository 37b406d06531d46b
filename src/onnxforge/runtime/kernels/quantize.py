"""Linear (de)quantization: QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear.

QuantizeLinear computes ``y = saturate(round(x / y_scale) + y_zero_point)`` with ``round`` half-to-even; the
division runs in the precision of ``y_scale`` (or of the ``precision`` attribute, opset 23+). Integer targets
saturate to their range (uint8 [0, 255], int8 [-128, 127], ..., int4 [-8, 7], uint2 [0, 3], int2 [-2, 1]).
float8 targets skip the integer rounding: ``saturate=1`` clamps to the largest finite value, ``saturate=0``
lets overflow become inf (e5m2) or NaN (e4m3fn, *fnuz). float4/float6 have no inf and always saturate.

DequantizeLinear computes ``y = (x - x_zero_point) * x_scale`` in float32 (exactly in integers first), cast
to ``output_dtype`` or the scale's type.

The scale's shape picks the granularity: a scalar (per tensor), a 1-D tensor of ``x.shape[axis]`` (per axis),
or, with ``block_size = B``, ``x``'s shape with ``ceil(D_axis / B)`` at ``axis`` (blocked: each scale
covers ``B`` consecutive elements along ``axis``, the last block may be shorter).

DynamicQuantizeLinear picks ``scale = (max(0, max x) - min(0, min x)) / 255`` and
``zero_point = round(clip(-min(0, min x) / scale, 0, 255))``, then quantizes to uint8 as above; an input
of zeros only gets ``scale = 1`` (onnxruntime's choice; the formula would divide by zero).
"""

from __future__ import annotations

import warnings

import ml_dtypes
import numpy as np
import onnx.numpy_helper

from onnxforge._errors import InvalidArgument
from onnxforge.ir.dtypes import np_dtype_for
from onnxforge.runtime.kernels._args import axis_index
from onnxforge.runtime.registry import kernel

_INTEGER_RANGES: dict[np.dtype, tuple[int, int]] = {
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int8): (-128, 127),
    np.dtype(np.uint16): (0, 65535),
    np.dtype(np.int16): (-32768, 32767),
    np.dtype(ml_dtypes.uint4): (0, 15),
    np.dtype(ml_dtypes.int4): (-8, 7),
    np.dtype(ml_dtypes.uint2): (0, 3),
    np.dtype(ml_dtypes.int2): (-2, 1),
}
_FLOAT8 = frozenset(
    np.dtype(t)
    for t in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz)
)
# No inf encoding: ml_dtypes' cast already clamps overflow to the largest finite value.
_SMALL_FLOATS = frozenset(
    np.dtype(t) for t in (ml_dtypes.float4_e2m1fn, ml_dtypes.float6_e2m3fn, ml_dtypes.float6_e3m2fn)
)
_E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
_F32 = np.dtype(np.float32)


def expand_param(value: np.ndarray, shape: tuple[int, ...], axis: int, block_size: int, what: str) -> np.ndarray:
    """A scale or zero point shaped to broadcast against ``shape`` (per tensor, per axis or blocked)."""
    if value.ndim == 0 or (value.ndim == 1 and value.size == 1):
        return value.reshape(())
    rank = len(shape)
    if rank == 0:
        raise InvalidArgument(f"{what} must be a scalar for a scalar input, got shape {list(value.shape)}")
    axis = axis_index(axis, rank)
    if not block_size:
        if value.ndim != 1 or value.size != shape[axis]:
            raise InvalidArgument(
                f"{what} must be a scalar or a 1-D tensor of length {shape[axis]} (input dim {axis}), "
                f"got shape {list(value.shape)}"
            )
        return value.reshape([shape[axis] if i == axis else 1 for i in range(rank)])
    if block_size < 0:
        raise InvalidArgument(f"block_size must be positive, got {block_size}")
    blocks = -(-shape[axis] // block_size)
    expected = tuple(blocks if i == axis else d for i, d in enumerate(shape))
    if value.shape != expected:
        raise InvalidArgument(
            f"{what} of blocked quantization (axis {axis}, block_size {block_size}) must have shape "
            f"{list(expected)} for input shape {list(shape)}, got {list(value.shape)}"
        )
    return np.repeat(value, block_size, axis=axis).take(np.arange(shape[axis]), axis=axis)


def _check_scale_rank(scale: np.ndarray, what: str) -> None:
    if scale.ndim > 1:
        raise InvalidArgument(f"{what} must be a scalar or a 1-D tensor before opset 21, got shape {list(scale.shape)}")


def _quotient(x: np.ndarray, scale: np.ndarray, precision: int) -> np.ndarray:
    """``x / scale`` in the division's type (the scale's unless ``precision`` is set): operands and quotient
    are rounded to that type, the division itself runs in float32 (exact enough for every 16-bit type)."""
    if precision:
        target = np_dtype_for(precision)
    else:
        target = _F32 if scale.dtype == _E8M0 else scale.dtype
    if target.kind not in "fV":
        target = np.dtype(np.float64)  # an integer "precision" leaves nothing to round to; divide exactly
    wide = np.float64 if target == np.float64 else np.float32
    xs = x.astype(target, copy=False).astype(wide, copy=False)
    q = np.divide(xs, scale.astype(target, copy=False).astype(wide, copy=False))
    return q if q.dtype == target else q.astype(target)


def quantize(
    x: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    *,
    axis: int = 1,
    saturate: int = 1,
    block_size: int = 0,
    output_dtype: int = 0,
    precision: int = 0,
) -> np.ndarray:
    """``saturate(round(x / scale) + zero_point)`` in the zero point's type (else ``output_dtype``, else uint8)."""
    if zero_point is not None:
        target = zero_point.dtype
        if output_dtype and np_dtype_for(output_dtype) != target:
            raise InvalidArgument(
                f"output_dtype {np_dtype_for(output_dtype)} differs from y_zero_point's type {target}"
            )
    else:
        target = np_dtype_for(output_dtype) if output_dtype else np.dtype(np.uint8)
    if target not in _INTEGER_RANGES and target not in _FLOAT8 and target not in _SMALL_FLOATS:
        raise InvalidArgument(f"QuantizeLinear cannot produce {target}")
    s = expand_param(scale, x.shape, axis, block_size, "y_scale")
    zp = None if zero_point is None else expand_param(zero_point, x.shape, axis, block_size, "y_zero_point")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = _quotient(x, s, precision)
        wide = np.float64 if q.dtype == np.float64 else np.float32
        if target in _INTEGER_RANGES:
            low, high = _INTEGER_RANGES[target]
            y = np.rint(q.astype(wide, copy=False))
            if zp is not None:
                y = y + zp.astype(wide)
            return np.clip(y, low, high).astype(target)
        y = q.astype(wide, copy=False)
        if zp is not None and np.any(zp.astype(np.float32) != 0):
            y = y + zp.astype(wide)
        if target in _FLOAT8 and saturate:
            return onnx.numpy_helper.saturate_cast(y, target)
        return y.astype(target)


def dequantize(
    x: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    *,
    axis: int = 1,
    block_size: int = 0,
    output_dtype: int = 0,
) -> np.ndarray:
    """``(x - zero_point) * scale`` computed in float32, as ``output_dtype`` (default: the scale's type)."""
    if output_dtype:
        target = np_dtype_for(output_dtype)
    elif scale.dtype == _E8M0:
        raise InvalidArgument("DequantizeLinear with a float8e8m0 x_scale needs output_dtype")
    else:
        target = scale.dtype
    s = expand_param(scale, x.shape, axis, block_size, "x_scale").astype(np.float32)
    if x.dtype.kind in "iu":
        diff = x.astype(np.int64)
        if zero_point is not None:
            if zero_point.dtype != x.dtype:
                raise InvalidArgument(f"x_zero_point has type {zero_point.dtype}, expected x's type {x.dtype}")
            diff = diff - expand_param(zero_point, x.shape, axis, block_size, "x_zero_point").astype(np.int64)
        dx = diff.astype(np.float32)
    else:
        dx = x.astype(np.float32)
        if zero_point is not None:
            if zero_point.dtype in _INTEGER_RANGES and zero_point.dtype != x.dtype:
                raise InvalidArgument(f"x_zero_point has type {zero_point.dtype}, expected x's type {x.dtype}")
            dx = dx - expand_param(zero_point, x.shape, axis, block_size, "x_zero_point").astype(np.float32)
    with np.errstate(all="ignore"):
        y = np.multiply(dx, s)
        return y if y.dtype == target else y.astype(target)


@kernel("QuantizeLinear", since=10)
def QuantizeLinear_10(x: np.ndarray, y_scale: np.ndarray, y_zero_point: np.ndarray | None = None) -> np.ndarray:
    _check_scale_rank(y_scale, "y_scale")
    if y_scale.size != 1:
        raise InvalidArgument(f"y_scale must be a scalar in opset 10, got shape {list(y_scale.shape)}")
    return quantize(x, y_scale, y_zero_point)


@kernel("QuantizeLinear", since=13)
def QuantizeLinear_13(
    x: np.ndarray, y_scale: np.ndarray, y_zero_point: np.ndarray | None = None, *, axis: int = 1
) -> np.ndarray:
    _check_scale_rank(y_scale, "y_scale")
    return quantize(x, y_scale, y_zero_point, axis=axis)


@kernel("QuantizeLinear", since=19)
def QuantizeLinear_19(
    x: np.ndarray, y_scale: np.ndarray, y_zero_point: np.ndarray | None = None, *, axis: int = 1, saturate: int = 1
) -> np.ndarray:
    _check_scale_rank(y_scale, "y_scale")
    return quantize(x, y_scale, y_zero_point, axis=axis, saturate=saturate)


@kernel("QuantizeLinear", since=21)
def QuantizeLinear_21(
    x: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None = None,
    *,
    axis: int = 1,
    saturate: int = 1,
    block_size: int = 0,
    output_dtype: int = 0,
) -> np.ndarray:
    return quantize(
        x, y_scale, y_zero_point, axis=axis, saturate=saturate, block_size=block_size, output_dtype=output_dtype
    )


# 24, 25 and 28 only widened the type lists (float8e8m0 scales, int2/uint2, float6 outputs).
@kernel("QuantizeLinear", since=23)
def QuantizeLinear(
    x: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None = None,
    *,
    axis: int = 1,
    saturate: int = 1,
    block_size: int = 0,
    output_dtype: int = 0,
    precision: int = 0,
) -> np.ndarray:
    return quantize(
        x,
        y_scale,
        y_zero_point,
        axis=axis,
        saturate=saturate,
        block_size=block_size,
        output_dtype=output_dtype,
        precision=precision,
    )


@kernel("DequantizeLinear", since=10)
def DequantizeLinear_10(x: np.ndarray, x_scale: np.ndarray, x_zero_point: np.ndarray | None = None) -> np.ndarray:
    _check_scale_rank(x_scale, "x_scale")
    if x_scale.size != 1:
        raise InvalidArgument(f"x_scale must be a scalar in opset 10, got shape {list(x_scale.shape)}")
    return dequantize(x, x_scale, x_zero_point)


@kernel("DequantizeLinear", since=13)
def DequantizeLinear_13(
    x: np.ndarray, x_scale: np.ndarray, x_zero_point: np.ndarray | None = None, *, axis: int = 1
) -> np.ndarray:
    _check_scale_rank(x_scale, "x_scale")
    return dequantize(x, x_scale, x_zero_point, axis=axis)


@kernel("DequantizeLinear", since=21)
def DequantizeLinear_21(
    x: np.ndarray, x_scale: np.ndarray, x_zero_point: np.ndarray | None = None, *, axis: int = 1, block_size: int = 0
) -> np.ndarray:
    return dequantize(x, x_scale, x_zero_point, axis=axis, block_size=block_size)


# 24, 25 and 28 only widened the type lists (float8e8m0 scales, int2/uint2 and float6 inputs).
@kernel("DequantizeLinear", since=23)
def DequantizeLinear(
    x: np.ndarray,
    x_scale: np.ndarray,
    x_zero_point: np.ndarray | None = None,
    *,
    axis: int = 1,
    block_size: int = 0,
    output_dtype: int = 0,
) -> np.ndarray:
    return dequantize(x, x_scale, x_zero_point, axis=axis, block_size=block_size, output_dtype=output_dtype)


@kernel("DynamicQuantizeLinear", since=11)
def DynamicQuantizeLinear(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xf = x.astype(np.float32, copy=False)
    high = np.float32(max(0.0, float(xf.max()))) if xf.size else np.float32(0)
    low = np.float32(min(0.0, float(xf.min()))) if xf.size else np.float32(0)
    scale = np.float32(1.0) if high == low else np.float32((high - low) / np.float32(255))
    zero_point = np.rint(np.clip(np.float32(0) - low / scale, 0, 255))
    with np.errstate(all="ignore"):
        y = np.clip(np.rint(xf / scale) + zero_point, 0, 255).astype(np.uint8)
    return y, np.array(scale, dtype=np.float32), np.array(zero_point, dtype=np.uint8)
