"""Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare, ArgMax and ArgMin.

Axes were an attribute until they became an optional second input (ReduceSum at opset 13, the others at 18),
which added ``noop_with_empty_axes``: with no (or empty) axes, reduce over everything, or with the flag set
return the input as a reduction over no axes would (the element-wise part still applies, e.g. ReduceL1 gives
``|x|``, as in onnx's reference implementation).

Sums over float16 and the ml_dtypes floats accumulate in float32 and are cast back once; integer sums stay
in their own type (NumPy would widen int32 to int64). Reducing an empty set yields the operation's identity:
0 for sums, 1 for the product, -inf / +inf (or the type's extreme) for max / min, -inf for the log sums.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels.elementwise import as_array
from onnxforge.runtime.registry import kernel

Axes = tuple[int, ...] | None  # None: every axis
Reducer = Callable[[np.ndarray, Axes, bool], np.ndarray]


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) if x.dtype.kind == "V" or x.dtype == np.float16 else x


def _sum(x: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    return np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype if x.dtype.kind in "iu" else None)


def _lowest(dtype: np.dtype) -> object:
    if dtype == np.bool_:
        return False
    return np.iinfo(dtype).min if dtype.kind in "iu" else -np.inf


def _highest(dtype: np.dtype) -> object:
    if dtype == np.bool_:
        return True
    return np.iinfo(dtype).max if dtype.kind in "iu" else np.inf


def _reduce_max(x: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    if x.size == 0:
        return np.max(x, axis=axes, keepdims=keepdims, initial=_lowest(x.dtype))
    return np.max(x, axis=axes, keepdims=keepdims)


def _reduce_min(x: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    if x.size == 0:
        return np.min(x, axis=axes, keepdims=keepdims, initial=_highest(x.dtype))
    return np.min(x, axis=axes, keepdims=keepdims)


def _reduce_sum(x: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    return _sum(_wide(x), axes, keepdims)


def _reduce_mean(x: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    w = _wide(x)
    if w.size == 0:  # 0 / 0: NaN, without np.mean's "Mean of empty slice" warning
        count = 0 if axes is None else int(np.prod([w.shape[a] for a in axes]))
        with np.errstate(invalid="ignore"):
            return np.sum(w, axis=axes, keepdims=keepdims, dtype=np.float64) / count
    if w.dtype.kind in "iu":
        return np.mean(w, axis=axes, keepdims=keepdims, dtype=np.float64)
    return np.mean(w, axis=axes, keepdims=keepdims)


def _reduce_prod(x: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    w = _wide(x)
    return np.prod(w, axis=axes, keepdims=keepdims, dtype=w.dtype if w.dtype.kind in "iu" else None)


def _reduce_l1(x: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    return _sum(np.abs(_wide(x)), axes, keepdims)


def _reduce_l2(x: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    w = _wide(x)
    if w.dtype.kind in "iu":
        w = w.astype(np.float64)  # the root of an integer sum of squares, truncated back
    return np.sqrt(_sum(w * w, axes, keepdims))


def _reduce_sum_square(x: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    w = _wide(x)
    return _sum(w * w, axes, keepdims)


def _reduce_log_sum(x: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    with np.errstate(divide="ignore"):  # log(0) = -inf is the answer for a zero (or empty) sum
        return np.log(_sum(_wide(x), axes, keepdims))


def _reduce_log_sum_exp(x: np.ndarray, axes: Axes, keepdims: bool) -> np.ndarray:
    w = _wide(x)
    if w.size == 0:
        return _reduce_log_sum(w, axes, keepdims)  # log(0) = -inf, the value for an empty set
    peak = np.max(w, axis=axes, keepdims=True)
    # An infinite peak would make w - peak NaN; shifting by 0 there gives the right +/-inf.
    peak = np.where(np.isfinite(peak), peak, 0)
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(w - peak), axis=axes, keepdims=True)) + peak
    if keepdims:
        return total
    return total.reshape(()) if axes is None else np.squeeze(total, axis=axes)


def _normalise_axes(axes: list[int] | np.ndarray, ndim: int) -> tuple[int, ...]:
    result = []
    for axis in np.asarray(axes, dtype=np.int64).reshape(-1).tolist():
        if not -ndim <= axis < max(ndim, 1):
            raise InvalidArgument(f"axis {axis} is out of range for a tensor of rank {ndim}")
        result.append(axis + ndim if axis < 0 else axis)
    if len(set(result)) != len(result):
        raise InvalidArgument(f"axes {list(axes)} repeat an axis")
    return tuple(result)


def _run(reducer: Reducer, data: np.ndarray, axes: Axes, keepdims: int) -> np.ndarray:
    if data.ndim == 0:
        axes = None  # a scalar reduces to itself whatever the (necessarily empty or 0/-1) axes say
    return as_array(reducer(data, axes, bool(keepdims))).astype(data.dtype, copy=False)


def _with_attribute_axes(reducer: Reducer, data: np.ndarray, axes: list[int] | None, keepdims: int) -> np.ndarray:
    return _run(reducer, data, _normalise_axes(axes, data.ndim) if axes else None, keepdims)


def _with_input_axes(
    reducer: Reducer, data: np.ndarray, axes: np.ndarray | None, keepdims: int, noop_with_empty_axes: int
) -> np.ndarray:
    if axes is None or axes.size == 0:
        return _run(reducer, data, () if noop_with_empty_axes else None, keepdims)
    return _run(reducer, data, _normalise_axes(axes, data.ndim), keepdims)


# Opset 1..12 (ReduceSum) / 1..17 (the others): axes is an attribute.


@kernel("ReduceSum", since=1)
def ReduceSum_1(data: np.ndarray, *, axes: list[int] | None = None, keepdims: int = 1) -> np.ndarray:
    return _with_attribute_axes(_reduce_sum, data, axes, keepdims)


@kernel("ReduceMean", since=1)
def ReduceMean_1(data: np.ndarray, *, axes: list[int] | None = None, keepdims: int = 1) -> np.ndarray:
    return _with_attribute_axes(_reduce_mean, data, axes, keepdims)


@kernel("ReduceMax", since=1)
def ReduceMax_1(data: np.ndarray, *, axes: list[int] | None = None, keepdims: int = 1) -> np.ndarray:
    return _with_attribute_axes(_reduce_max, data, axes, keepdims)


@kernel("ReduceMin", since=1)
def ReduceMin_1(data: np.ndarray, *, axes: list[int] | None = None, keepdims: int = 1) -> np.ndarray:
    return _with_attribute_axes(_reduce_min, data, axes, keepdims)


@kernel("ReduceProd", since=1)
def ReduceProd_1(data: np.ndarray, *, axes: list[int] | None = None, keepdims: int = 1) -> np.ndarray:
    return _with_attribute_axes(_reduce_prod, data, axes, keepdims)


@kernel("ReduceL1", since=1)
def ReduceL1_1(data: np.ndarray, *, axes: list[int] | None = None, keepdims: int = 1) -> np.ndarray:
    return _with_attribute_axes(_reduce_l1, data, axes, keepdims)


@kernel("ReduceL2", since=1)
def ReduceL2_1(data: np.ndarray, *, axes: list[int] | None = None, keepdims: int = 1) -> np.ndarray:
    return _with_attribute_axes(_reduce_l2, data, axes, keepdims)


@kernel("ReduceLogSum", since=1)
def ReduceLogSum_1(data: np.ndarray, *, axes: list[int] | None = None, keepdims: int = 1) -> np.ndarray:
    return _with_attribute_axes(_reduce_log_sum, data, axes, keepdims)


@kernel("ReduceLogSumExp", since=1)
def ReduceLogSumExp_1(data: np.ndarray, *, axes: list[int] | None = None, keepdims: int = 1) -> np.ndarray:
    return _with_attribute_axes(_reduce_log_sum_exp, data, axes, keepdims)


@kernel("ReduceSumSquare", since=1)
def ReduceSumSquare_1(data: np.ndarray, *, axes: list[int] | None = None, keepdims: int = 1) -> np.ndarray:
    return _with_attribute_axes(_reduce_sum_square, data, axes, keepdims)


# Opset 13 (ReduceSum) / 18 (the others) on: axes is an optional input.


@kernel("ReduceSum", since=13)
def ReduceSum(
    data: np.ndarray, axes: np.ndarray | None = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0
) -> np.ndarray:
    return _with_input_axes(_reduce_sum, data, axes, keepdims, noop_with_empty_axes)


@kernel("ReduceMean", since=18)
def ReduceMean(
    data: np.ndarray, axes: np.ndarray | None = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0
) -> np.ndarray:
    return _with_input_axes(_reduce_mean, data, axes, keepdims, noop_with_empty_axes)


@kernel("ReduceMax", since=18)
def ReduceMax(
    data: np.ndarray, axes: np.ndarray | None = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0
) -> np.ndarray:
    return _with_input_axes(_reduce_max, data, axes, keepdims, noop_with_empty_axes)


@kernel("ReduceMin", since=18)
def ReduceMin(
    data: np.ndarray, axes: np.ndarray | None = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0
) -> np.ndarray:
    return _with_input_axes(_reduce_min, data, axes, keepdims, noop_with_empty_axes)


@kernel("ReduceProd", since=18)
def ReduceProd(
    data: np.ndarray, axes: np.ndarray | None = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0
) -> np.ndarray:
    return _with_input_axes(_reduce_prod, data, axes, keepdims, noop_with_empty_axes)


@kernel("ReduceL1", since=18)
def ReduceL1(
    data: np.ndarray, axes: np.ndarray | None = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0
) -> np.ndarray:
    return _with_input_axes(_reduce_l1, data, axes, keepdims, noop_with_empty_axes)


@kernel("ReduceL2", since=18)
def ReduceL2(
    data: np.ndarray, axes: np.ndarray | None = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0
) -> np.ndarray:
    return _with_input_axes(_reduce_l2, data, axes, keepdims, noop_with_empty_axes)


@kernel("ReduceLogSum", since=18)
def ReduceLogSum(
    data: np.ndarray, axes: np.ndarray | None = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0
) -> np.ndarray:
    return _with_input_axes(_reduce_log_sum, data, axes, keepdims, noop_with_empty_axes)


@kernel("ReduceLogSumExp", since=18)
def ReduceLogSumExp(
    data: np.ndarray, axes: np.ndarray | None = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0
) -> np.ndarray:
    return _with_input_axes(_reduce_log_sum_exp, data, axes, keepdims, noop_with_empty_axes)


@kernel("ReduceSumSquare", since=18)
def ReduceSumSquare(
    data: np.ndarray, axes: np.ndarray | None = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0
) -> np.ndarray:
    return _with_input_axes(_reduce_sum_square, data, axes, keepdims, noop_with_empty_axes)


def _arg(find: Callable[..., np.ndarray], data: np.ndarray, axis: int, keepdims: int, last: int) -> np.ndarray:
    if data.ndim == 0:
        raise InvalidArgument("ArgMax/ArgMin need a tensor of rank >= 1, got a scalar")
    (axis,) = _normalise_axes([axis], data.ndim)
    if data.shape[axis] == 0:
        raise InvalidArgument(f"cannot take the arg-extreme over axis {axis} of length 0 (shape {data.shape})")
    if last:
        # The first hit in the reversed axis is the last one in the original order.
        index = data.shape[axis] - 1 - find(np.flip(data, axis), axis=axis, keepdims=bool(keepdims))
    else:
        index = find(data, axis=axis, keepdims=bool(keepdims))
    return as_array(index).astype(np.int64, copy=False)


# Opset 11 allowed negative axes and 12 added select_last_index; both are supersets of what came before.


@kernel("ArgMax", since=1)
def ArgMax(data: np.ndarray, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0) -> np.ndarray:
    return _arg(np.argmax, data, axis, keepdims, select_last_index)


@kernel("ArgMin", since=1)
def ArgMin(data: np.ndarray, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0) -> np.ndarray:
    return _arg(np.argmin, data, axis, keepdims, select_last_index)
