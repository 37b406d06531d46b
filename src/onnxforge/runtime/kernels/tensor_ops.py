"""Tensor creation and plumbing: Constant, Identity, ConstantOfShape, EyeLike, Range, OneHot, Trilu, Dropout,
Cast, CastLike.

Cast follows onnxruntime where the spec leaves room: numbers print as ``%.8g`` (NaN, INF, -INF), bools as
1/0; strings parse in plain or scientific notation. float8 targets saturate unless ``saturate=0``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
from onnx import TensorProto

from onnxforge._errors import InvalidArgument
from onnxforge.ir.dtypes import np_dtype_for
from onnxforge.runtime.kernels._args import checked_shape, int_list, scalar_int, scalar_value
from onnxforge.runtime.registry import kernel


@kernel("Identity", since=1)
def Identity(input: Any) -> Any:
    return input


@kernel("Constant", since=1)
def Constant(
    *,
    value: np.ndarray | None = None,
    value_float: float | None = None,
    value_floats: list[float] | None = None,
    value_int: int | None = None,
    value_ints: list[int] | None = None,
    value_string: str | None = None,
    value_strings: list[str] | None = None,
    sparse_value: Any = None,
) -> np.ndarray:
    if value is not None:
        return value
    if value_float is not None:
        return np.array(value_float, dtype=np.float32)
    if value_floats is not None:
        return np.array(value_floats, dtype=np.float32)
    if value_int is not None:
        return np.array(value_int, dtype=np.int64)
    if value_ints is not None:
        return np.array(value_ints, dtype=np.int64)
    if value_string is not None:
        return np.array(value_string, dtype=object)
    if value_strings is not None:
        return np.array(value_strings, dtype=object)
    raise ValueError("Constant has none of its value attributes")


@kernel("ConstantOfShape", since=9)
def ConstantOfShape(input: np.ndarray, *, value: np.ndarray | None = None) -> np.ndarray:
    shape = checked_shape(int_list(input, "ConstantOfShape's input"), "ConstantOfShape")
    if value is None:
        return np.zeros(shape, dtype=np.float32)
    if value.size != 1:
        raise InvalidArgument(f"ConstantOfShape: value must hold one element, got shape {list(value.shape)}")
    return np.full(shape, value.reshape(-1)[0], dtype=value.dtype)


@kernel("EyeLike", since=9)
def EyeLike(input: np.ndarray, *, dtype: int | None = None, k: int = 0) -> np.ndarray:
    if input.ndim != 2:
        raise InvalidArgument(f"EyeLike: the input must be 2-D, got shape {list(input.shape)}")
    out_dtype = input.dtype if dtype is None else np_dtype_for(dtype)
    return np.eye(input.shape[0], input.shape[1], k=k, dtype=out_dtype)


@kernel("Range", since=11)
@kernel("Range", since=27)
def Range(start: np.ndarray, limit: np.ndarray, delta: np.ndarray, *, stash_type: int = 1) -> np.ndarray:
    dtype = np.asarray(start).dtype
    first, stop, step = (
        scalar_value(v, f"Range's {n}") for v, n in ((start, "start"), (limit, "limit"), (delta, "delta"))
    )
    if dtype.kind in "iu":
        a, b, d = int(first), int(stop), int(step)
        if d == 0:
            raise InvalidArgument("Range: delta must not be 0")
        count = max(-((a - b) // d), 0)  # ceil((b - a) / d) in exact integer arithmetic
        checked_shape([count], "Range")
        return (a + d * np.arange(count, dtype=np.int64)).astype(dtype)
    # fp16/bf16 compute in the stash type (float32 unless double is asked for); others in float64 like NumPy
    compute = np.float64 if dtype.itemsize > 2 or stash_type == 11 else np.float32
    a, b, d = (float(np.asarray(v).astype(compute)) for v in (first, stop, step))
    if d == 0:
        raise InvalidArgument("Range: delta must not be 0")
    span = np.ceil((b - a) / d)
    if not np.isfinite(span):
        raise InvalidArgument(f"Range: start {a}, limit {b} and delta {d} give an unbounded number of elements")
    count = max(int(span), 0)
    checked_shape([count], "Range")
    return (a + d * np.arange(count, dtype=compute)).astype(dtype)


@kernel("OneHot", since=9)
def OneHot(indices: np.ndarray, depth: np.ndarray, values: np.ndarray, *, axis: int = -1) -> np.ndarray:
    size = int(scalar_value(depth, "OneHot's depth"))
    if size < 1:
        raise InvalidArgument(f"OneHot: depth must be positive, got {size}")
    if values.size != 2:
        raise InvalidArgument(f"OneHot: values must be [off_value, on_value], got shape {list(values.shape)}")
    rank = indices.ndim
    if not -rank - 1 <= axis <= rank:
        raise InvalidArgument(f"OneHot: axis {axis} is out of range for an output of rank {rank + 1}")
    axis = axis + rank + 1 if axis < 0 else axis
    checked_shape([*indices.shape, size], "OneHot")
    positions = indices.astype(np.int64)  # float indices truncate toward zero
    positions = np.where(positions < 0, positions + size, positions)  # [-depth, -1] wrap; others stay off
    hot = np.expand_dims(positions, axis) == np.arange(size).reshape([size] + [1] * (rank - axis))
    off, on = values.reshape(-1)
    return np.where(hot, on, off).astype(values.dtype)


@kernel("Trilu", since=14)
def Trilu(input: np.ndarray, k: np.ndarray | None = None, *, upper: int = 1) -> np.ndarray:
    if input.ndim < 2:
        raise InvalidArgument(f"Trilu: the input must have rank >= 2, got shape {list(input.shape)}")
    offset = 0 if k is None else scalar_int(k, "Trilu's k")
    rows, cols = input.shape[-2:]
    keep = np.tri(rows, cols, offset - 1, dtype=bool) if upper else np.tri(rows, cols, offset, dtype=bool)
    if upper:
        keep = ~keep
    return np.where(keep, input, np.zeros((), dtype=input.dtype))


@kernel("Dropout", since=1)
def Dropout_1(
    data: np.ndarray,
    *,
    ratio: float = 0.5,
    is_test: int = 0,
    consumed_inputs: list[int] | None = None,
    _num_outputs: int = 1,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    # Before opset 7 is_test=0 asked for training; an inference engine runs it as inference.
    return _dropout(data, ratio, False, None, _num_outputs, data.dtype)


@kernel("Dropout", since=7)
def Dropout_7(
    data: np.ndarray, *, ratio: float = 0.5, _num_outputs: int = 1
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    # Opset 7-9: inference only, and the mask has the data's type.
    return _dropout(data, ratio, False, None, _num_outputs, data.dtype)


@kernel("Dropout", since=10)
def Dropout_10(
    data: np.ndarray, *, ratio: float = 0.5, _num_outputs: int = 1
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    return _dropout(data, ratio, False, None, _num_outputs, np.dtype(bool))


@kernel("Dropout", since=12)
def Dropout(
    data: np.ndarray,
    ratio: np.ndarray | None = None,
    training_mode: np.ndarray | None = None,
    *,
    seed: int | None = None,
    _num_outputs: int = 1,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    # kept as a NumPy scalar of the ratio's type: the scale 1 / (1 - ratio) is computed in that precision
    rate = np.float32(0.5) if ratio is None else scalar_value(ratio, "Dropout's ratio")
    training = False if training_mode is None else bool(scalar_value(training_mode, "Dropout's training_mode"))
    return _dropout(data, rate, training, seed, _num_outputs, np.dtype(bool))


def _dropout(
    data: np.ndarray, ratio: float | np.generic, training: bool, seed: int | None, outputs: int, mask_dtype: np.dtype
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    if not training or ratio == 0:
        return (data, np.ones(data.shape, dtype=mask_dtype)) if outputs > 1 else data
    if not 0 <= ratio < 1:
        raise InvalidArgument(f"Dropout: ratio must be in [0, 1) in training mode, got {ratio}")
    # RandomState(seed).uniform is what onnx's reference draws, so a seeded node reproduces its masks.
    draws = np.random.RandomState(seed).uniform(0.0, 1.0, data.shape)
    keep = draws >= ratio
    output = (data * keep * (1.0 / (1.0 - ratio))).astype(data.dtype)
    return (output, keep.astype(mask_dtype)) if outputs > 1 else output


_FLOAT8 = frozenset(
    {TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E5M2FNUZ}
)


def _type_id(to: int | str) -> int:
    if isinstance(to, str):  # Cast-1 named the type ("FLOAT") instead of numbering it
        try:
            return int(TensorProto.DataType.Value(to.upper()))
        except ValueError:
            raise InvalidArgument(f"Cast: unknown target type {to!r}") from None
    return int(to)


def _format_number(value: Any) -> str:
    # onnxruntime's spelling: NaN / INF / -INF, otherwise 8 significant digits ("%.8g")
    number = float(value)
    if np.isnan(number):
        return "NaN"
    if np.isinf(number):
        return "INF" if number > 0 else "-INF"
    return f"{number:.8g}"


def _to_strings(x: np.ndarray) -> np.ndarray:
    if x.dtype == object:
        return x.copy()
    if x.dtype.kind in "iu":
        items = [str(v) for v in x.reshape(-1).tolist()]
    elif x.dtype.kind == "b":
        items = ["1" if v else "0" for v in x.reshape(-1).tolist()]
    else:
        items = [_format_number(v) for v in x.astype(np.float64).reshape(-1).tolist()]
    return np.array(items, dtype=object).reshape(x.shape)


def _parse_strings(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Strings to numbers: plain and scientific notation, INF/-INF/NaN in any case; '100.5' to int is 100."""
    texts = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in x.reshape(-1).tolist()]
    try:
        if dtype.kind in "iub":
            numbers: list[Any] = []
            for text in texts:
                try:
                    numbers.append(int(text))
                except ValueError:
                    numbers.append(int(float(text)))
            array = np.array(numbers, dtype=bool if dtype.kind == "b" else dtype)
        else:
            array = np.array([float(text) for text in texts], dtype=np.float64)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"Cast: cannot convert the strings to {dtype}: {exc}") from None
    return array.reshape(x.shape)


def cast_array(x: np.ndarray, to: int, saturate: int = 1, round_mode: str = "up") -> np.ndarray:
    """``x`` as ONNX element type ``to``, with the spec's float8 saturation and float8e8m0 rounding."""
    if to == TensorProto.STRING:
        return _to_strings(x)
    try:
        dtype = np_dtype_for(to)
    except Exception:
        raise InvalidArgument(f"Cast: unsupported target type {to}") from None
    if x.dtype == object:
        x = _parse_strings(x, dtype)
    if x.dtype == dtype:
        return x
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float->int of NaN/inf is undefined by the spec; NumPy warns
        if to in _FLOAT8 and saturate:
            source = x if x.dtype.kind in "fiub" else x.astype(np.float32)
            return onnx.numpy_helper.saturate_cast(source, dtype)
        if to == TensorProto.FLOAT8E8M0:
            return onnx.numpy_helper.to_float8e8m0(x, bool(saturate), round_mode).astype(dtype)
        return x.astype(dtype)


@kernel("Cast", since=1)
@kernel("Cast", since=6)
@kernel("Cast", since=19)
@kernel("Cast", since=24)
def Cast(input: np.ndarray, *, to: int | str, saturate: int = 1, round_mode: str = "up") -> np.ndarray:
    return cast_array(input, _type_id(to), saturate, round_mode)


@kernel("CastLike", since=15)
@kernel("CastLike", since=19)
@kernel("CastLike", since=24)
def CastLike(input: np.ndarray, target_type: np.ndarray, *, saturate: int = 1, round_mode: str = "up") -> np.ndarray:
    to = TensorProto.STRING if target_type.dtype == object else onnx.helper.np_dtype_to_tensor_dtype(target_type.dtype)
    return cast_array(input, int(to), saturate, round_mode)
