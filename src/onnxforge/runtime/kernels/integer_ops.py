"""Integer and quantized linear algebra: MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv.

- MatMulInteger: ``Y = (A - a_zero_point) @ (B - b_zero_point)`` as int32 (a's zero point per tensor or per
  row, b's per tensor or per column).
- ConvInteger: ``Y[n, m, o] = sum_{c, j} (W[m, c, j] - w_zp[m]) * (Xpad[n, c, o * s + j * d] - x_zp)`` as int32,
  where padding holds ``x_zp`` (it contributes zero).
- QLinearMatMul / QLinearConv: the same integer accumulation ``acc`` (plus the int32 bias ``B`` for
  QLinearConv), requantized as ``y = saturate(round(acc * (a_scale * b_scale / y_scale)) + y_zero_point)``
  with ``round`` half-to-even, in ``y_zero_point``'s type. The scale ratio is formed in the scales' own type
  (float32, float16 or bfloat16), the product in float64. QLinearMatMul-21's float8 inputs dequantize to
  float32, multiply, and quantize back with a saturating cast.

The integer products run as float64 BLAS matmuls: every partial sum of 8-bit products is an integer far below
2**53, so the result is exact; the final int64 -> int32 conversion wraps like a 32-bit accumulator would.
Convolutions are im2col (one strided slice of the padded input per kernel tap) followed by one batched matmul.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import onnx.numpy_helper

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._spatial import (
    conv_geometry,
    kernel_from,
    pad_for_windows,
    prod,
    spatial_params,
    window_slice,
)
from onnxforge.runtime.registry import kernel


def _wrap_int32(acc: np.ndarray) -> np.ndarray:
    return np.rint(acc).astype(np.int64).astype(np.int32)


def _scalar_like(value: np.ndarray, what: str) -> np.ndarray:
    if value.size != 1:
        raise InvalidArgument(f"{what} must be a scalar (per tensor), got shape {list(value.shape)}")
    return value.reshape(())


def _row_param(value: np.ndarray, a: np.ndarray, what: str) -> np.ndarray:
    """A per-tensor or per-row parameter of ``a`` (M, K), shaped to broadcast against ``a``."""
    if value.size == 1:
        return value.reshape(())
    if value.ndim == 1 and a.ndim >= 2 and value.shape[0] == a.shape[-2]:
        return value.reshape(-1, 1)
    if value.ndim == a.ndim and value.shape[-1] == 1:
        return value
    raise InvalidArgument(
        f"{what} must be a scalar or hold one value per row of shape {list(a.shape)}, got {list(value.shape)}"
    )


def _col_param(value: np.ndarray, b: np.ndarray, what: str) -> np.ndarray:
    """A per-tensor or per-column parameter of ``b`` (K, N), shaped to broadcast against ``b``."""
    if value.size == 1:
        return value.reshape(())
    if (
        b.ndim >= 2
        and value.shape[-1] == b.shape[-1]
        and (value.ndim == 1 or value.ndim == b.ndim and value.shape[-2] == 1)
    ):
        return value
    raise InvalidArgument(
        f"{what} must be a scalar or hold one value per column of shape {list(b.shape)}, got {list(value.shape)}"
    )


def _centered(x: np.ndarray, zero_point: np.ndarray | None) -> np.ndarray:
    """``x - zero_point`` as float64 (exact for the 8/16-bit integer types)."""
    xf = x.astype(np.float64)
    return xf if zero_point is None else xf - zero_point.astype(np.float64)


def _matmul_checked(a: np.ndarray, b: np.ndarray, op: str) -> np.ndarray:
    try:
        return np.matmul(a, b)
    except ValueError:
        raise InvalidArgument(f"{op}: shapes {list(a.shape)} and {list(b.shape)} cannot be multiplied") from None


def _requantize(
    acc: np.ndarray, multiplier: np.ndarray, y_zero_point: np.ndarray | None, dtype: np.dtype
) -> np.ndarray:
    """``saturate(round(acc * multiplier) + y_zero_point)`` as ``dtype`` (an integer or float8 type)."""
    with np.errstate(all="ignore"):
        y = acc * multiplier.astype(np.float64)
        if dtype.kind in "iu":
            y = np.rint(y)
            if y_zero_point is not None:
                y = y + y_zero_point.astype(np.float64)
            info = np.iinfo(dtype)
            return np.clip(y, info.min, info.max).astype(dtype)
        if y_zero_point is not None:
            y = y + y_zero_point.astype(np.float64)
        return onnx.numpy_helper.saturate_cast(y.astype(np.float32), dtype)


def _ratio(scale_a: np.ndarray, scale_b: np.ndarray, scale_y: np.ndarray) -> np.ndarray:
    """``scale_a * scale_b / scale_y`` in the scales' type, as ONNX's reference forms it."""
    with np.errstate(all="ignore"):
        return np.asarray(scale_a * scale_b / scale_y)


@kernel("MatMulInteger", since=10)
def MatMulInteger(
    A: np.ndarray, B: np.ndarray, a_zero_point: np.ndarray | None = None, b_zero_point: np.ndarray | None = None
) -> np.ndarray:
    a_zp = None if a_zero_point is None else _row_param(a_zero_point, A, "a_zero_point")
    b_zp = None if b_zero_point is None else _col_param(b_zero_point, B, "b_zero_point")
    return _wrap_int32(_matmul_checked(_centered(A, a_zp), _centered(B, b_zp), "MatMulInteger"))


@kernel("QLinearMatMul", since=10)
@kernel("QLinearMatMul", since=21)
def QLinearMatMul(
    a: np.ndarray,
    a_scale: np.ndarray,
    a_zero_point: np.ndarray | None,
    b: np.ndarray,
    b_scale: np.ndarray,
    b_zero_point: np.ndarray | None,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None = None,
) -> np.ndarray:
    a_s, b_s = _row_param(a_scale, a, "a_scale"), _col_param(b_scale, b, "b_scale")
    a_zp = None if a_zero_point is None else _row_param(a_zero_point, a, "a_zero_point")
    b_zp = None if b_zero_point is None else _col_param(b_zero_point, b, "b_zero_point")
    y_s = y_scale.reshape(()) if y_scale.size == 1 else y_scale
    y_zp = None if y_zero_point is None else (y_zero_point.reshape(()) if y_zero_point.size == 1 else y_zero_point)
    out_dtype = a.dtype if y_zero_point is None else y_zero_point.dtype
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        acc = _matmul_checked(_centered(a, a_zp), _centered(b, b_zp), "QLinearMatMul")
    else:  # float8: dequantize, multiply, quantize back
        fa = a.astype(np.float32) - (0 if a_zp is None else a_zp.astype(np.float32))
        fb = b.astype(np.float32) - (0 if b_zp is None else b_zp.astype(np.float32))
        acc = _matmul_checked(fa, fb, "QLinearMatMul").astype(np.float64)
    return _requantize(acc, _ratio(a_s, b_s, y_s), y_zp, np.dtype(out_dtype))


def _conv_exact(
    x: np.ndarray,
    w: np.ndarray,
    group: int,
    auto_pad: str,
    dilations: Sequence[int] | None,
    kernel_shape: Sequence[int] | None,
    pads: Sequence[int] | None,
    strides: Sequence[int] | None,
    op: str,
) -> np.ndarray:
    """Convolution of float64 arrays holding integers by im2col + one batched matmul (exact)."""
    if x.ndim < 3 or w.ndim != x.ndim:
        raise InvalidArgument(
            f"{op}: x {list(x.shape)} and w {list(w.shape)} must both be (N, C, spatial...) of one rank"
        )
    k = kernel_from(kernel_shape, w.shape)
    k, s, d = spatial_params(len(k), k, strides, dilations)
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    if group < 1 or m % group:
        raise InvalidArgument(f"{op}: {m} output channels are not divisible by group={group}")
    if c != cg * group:
        raise InvalidArgument(f"{op}: x has {c} channels, but w expects {cg} per group x group={group}")
    begins, _, out = conv_geometry(auto_pad, x.shape[2:], k, s, d, pads)
    xp = pad_for_windows(x, begins, out, k, s, d)
    taps = [xp[window_slice(offset, out, s, d)] for offset in itertools.product(*(range(ki) for ki in k))]
    cols = np.stack(taps, axis=2).reshape(n, group, cg * prod(k), prod(out))  # (N, C, K, *out) -> (N, G, Cg*K, P)
    y = np.matmul(w.reshape(group, m // group, cg * prod(k)), cols)
    return y.reshape(n, m, *out)


def _channel_param(value: np.ndarray, channels: int, what: str) -> np.ndarray:
    """A per-tensor or per-output-channel parameter shaped (M, 1, ..) against (N, M, spatial...)."""
    if value.size == 1:
        return value.reshape(())
    if value.ndim != 1 or value.shape[0] != channels:
        raise InvalidArgument(
            f"{what} must be a scalar or a 1-D tensor of {channels} (output channels), got {list(value.shape)}"
        )
    return value


@kernel("ConvInteger", since=10)
def ConvInteger(
    x: np.ndarray,
    w: np.ndarray,
    x_zero_point: np.ndarray | None = None,
    w_zero_point: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: list[int] | None = None,
    group: int = 1,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    xc = _centered(x, None if x_zero_point is None else _scalar_like(x_zero_point, "x_zero_point"))
    w_zp = None if w_zero_point is None else _channel_param(w_zero_point, w.shape[0], "w_zero_point")
    wc = _centered(w, None if w_zp is None else w_zp.reshape(-1, *(1,) * (w.ndim - 1)))
    return _wrap_int32(_conv_exact(xc, wc, group, auto_pad, dilations, kernel_shape, pads, strides, "ConvInteger"))


@kernel("QLinearConv", since=10)
def QLinearConv(
    x: np.ndarray,
    x_scale: np.ndarray,
    x_zero_point: np.ndarray | None,
    w: np.ndarray,
    w_scale: np.ndarray,
    w_zero_point: np.ndarray | None,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None,
    B: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: list[int] | None = None,
    group: int = 1,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    m = w.shape[0] if w.ndim else 0
    xc = _centered(x, None if x_zero_point is None else _scalar_like(x_zero_point, "x_zero_point"))
    w_zp = None if w_zero_point is None else _channel_param(w_zero_point, m, "w_zero_point")
    wc = _centered(w, None if w_zp is None else w_zp.reshape(-1, *(1,) * (w.ndim - 1)))
    acc = _conv_exact(xc, wc, group, auto_pad, dilations, kernel_shape, pads, strides, "QLinearConv")
    spatial = (1,) * (acc.ndim - 2)
    if B is not None:
        if B.shape != (m,):
            raise InvalidArgument(f"QLinearConv: B must have shape [{m}], got {list(B.shape)}")
        acc += B.astype(np.float64).reshape(m, *spatial)
    w_s = _channel_param(w_scale, m, "w_scale")
    w_s = w_s.reshape(m, *spatial) if w_s.ndim else w_s
    ratio = _ratio(_scalar_like(x_scale, "x_scale"), w_s, _scalar_like(y_scale, "y_scale"))
    y_zp = None if y_zero_point is None else _scalar_like(y_zero_point, "y_zero_point")
    out_dtype = x.dtype if y_zero_point is None else y_zero_point.dtype
    return _requantize(acc, ratio, y_zp, np.dtype(out_dtype))
