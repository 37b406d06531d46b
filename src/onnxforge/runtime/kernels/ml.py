"""ai.onnx.ml encoders: LabelEncoder, CategoryMapper, OneHotEncoder, DictVectorizer, CastMap and ZipMap, plus the
score post-transforms the classifiers and regressors share.

- LabelEncoder maps each element through ``keys[i] -> values[i]`` (the last repeated key wins), anything else
  to the default of the values' type (``-1``, ``-0.0``, ``"_Unused"``, or ``default_tensor``). Version 1 maps
  strings to their index in ``classes_strings`` and back. A NaN key matches every NaN input.
- CategoryMapper is the same lookup between ``cats_strings`` and ``cats_int64s`` in whichever direction the
  input's type asks for.
- OneHotEncoder gives ``Y[..., j] = (x == cats[j])`` as float32 (float inputs truncate to int64 first); an
  unknown value is all zeros, or an error when ``zeros=0``.
- DictVectorizer turns a map into ``[1, len(vocabulary)]`` with ``Y[0, j] = map.get(vocabulary[j], 0)``.
- CastMap turns a map ``int64 -> string|float`` into ``[1, len(map)]`` (DENSE, values in key order) or
  ``[1, max_map]`` (SPARSE, the value of key ``k`` at column ``k``, else 0 / ``"0.f"``), cast to float, int64
  or string (floats print as C's ``%f``).
- ZipMap turns scores ``[N, C]`` into a list of ``N`` dicts ``{label_j: score[n, j]}``.

Post-transforms follow onnxruntime (``ml_common.h``): LOGISTIC ``1 / (1 + e^-x)``, SOFTMAX per row,
SOFTMAX_ZERO a softmax where exact zeros stay 0, PROBIT ``sqrt(2) erfinv(2x - 1)`` with Winitzki's
approximation (``a = 0.147``) as onnxruntime computes it. A single score column becomes two columns when asked
to: ``[1 - s, s]`` (``s`` through the logistic first under LOGISTIC), or ``[-s, s]`` / ``[logistic(-s),
logistic(s)]`` for mixed-sign binary models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.registry import kernel

DOMAIN = "ai.onnx.ml"


# ----- post-transforms ------------------------------------------------------------------------------------
def logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def probit(x: np.ndarray) -> np.ndarray:
    """``sqrt(2) * erfinv(2x - 1)`` with onnxruntime's float32 approximation of erfinv."""
    y = (2 * np.asarray(x, dtype=np.float32) - 1).astype(np.float32)
    sign = np.where(y < 0, np.float32(-1), np.float32(1))
    t = ((1 - y) * (1 + y)).astype(np.float32)
    log = np.log(t)
    v = np.float32(2 / (3.14159 * 0.147)) + np.float32(0.5) * log
    v2 = np.float32(1 / 0.147) * log
    root = np.sqrt(-v + np.sqrt(v * v - v2))
    return (np.float32(1.41421356) * sign * root).astype(np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_zero(x: np.ndarray) -> np.ndarray:
    keep = np.abs(x) > 1e-7
    e = np.where(keep, np.exp(x - x.max(axis=-1, keepdims=True)), 0.0)
    return e / e.sum(axis=-1, keepdims=True)


def post_transform(scores: np.ndarray, name: str, add_second_class: int = -1) -> np.ndarray:
    """Apply ``name`` to ``[N, K]`` scores as onnxruntime does; ``add_second_class`` widens one column to two."""
    if name not in ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"):
        raise InvalidArgument(f"unknown post_transform {name!r}")
    if scores.shape[1] >= 2:
        if name == "LOGISTIC":
            return logistic(scores)
        if name == "SOFTMAX":
            return softmax(scores)
        if name == "SOFTMAX_ZERO":
            return softmax_zero(scores)
        return probit(scores).astype(np.float64) if name == "PROBIT" else scores
    if name == "PROBIT":
        return probit(scores).astype(np.float64)
    s = scores[:, :1]
    if add_second_class in (0, 1):
        s = logistic(s) if name == "LOGISTIC" else s
        return np.concatenate([1 - s, s], axis=1)
    if add_second_class in (2, 3):
        if name == "LOGISTIC":
            return np.concatenate([logistic(-s), logistic(s)], axis=1)
        return np.concatenate([-s, s], axis=1)
    return scores


# ----- lookups --------------------------------------------------------------------------------------------
def _lookup(x: np.ndarray, keys: list[Any] | np.ndarray, values: np.ndarray, default: Any) -> np.ndarray:
    """``values[i]`` where ``x == keys[i]`` (last repeat wins, NaN matches NaN), else ``default``."""
    out_dtype = values.dtype
    if x.dtype.kind in "OU":
        table = {str(k): v for k, v in zip(keys, values.tolist())}
        flat = [table.get(str(v), default) for v in x.reshape(-1).tolist()]
        out = np.empty(len(flat), dtype=out_dtype)
        out[:] = flat
        return out.reshape(x.shape)
    floats = x.dtype.kind == "f" or np.asarray(keys).dtype.kind == "f"
    key_array = np.asarray(keys, dtype=np.float64 if floats else np.int64)
    nan_value = default
    if key_array.dtype.kind == "f" and np.isnan(key_array).any():
        nan_value = values[np.flatnonzero(np.isnan(key_array))[-1]]
    last = len(key_array) - 1 - np.unique(key_array[::-1], return_index=True)[1]  # last occurrence of each key
    ordered_keys, ordered_values = key_array[last], values[last]
    wanted = x.astype(key_array.dtype).reshape(-1)
    out = np.full(wanted.shape, default, dtype=out_dtype)
    if len(ordered_keys):
        pos = np.minimum(np.searchsorted(ordered_keys, wanted), len(ordered_keys) - 1)
        hit = ordered_keys[pos] == wanted
        out[hit] = ordered_values[pos[hit]]
    if key_array.dtype.kind == "f":
        out[np.isnan(wanted)] = nan_value
    return out.reshape(x.shape)


def _object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


@kernel("LabelEncoder", since=1, domain=DOMAIN)
def LabelEncoder_1(
    X: np.ndarray, *, classes_strings: list[str] | None = None, default_int64: int = -1, default_string: str = "_Unused"
) -> np.ndarray:
    classes = classes_strings or []
    if X.dtype.kind in "OU":
        return _lookup(X, classes, np.arange(len(classes), dtype=np.int64), default_int64)
    return _lookup(X, list(range(len(classes))), _object_array(classes), default_string)


@kernel("LabelEncoder", since=2, domain=DOMAIN)
def LabelEncoder_2(
    X: np.ndarray,
    *,
    default_float: float = -0.0,
    default_int64: int = -1,
    default_string: str = "_Unused",
    keys_floats: list[float] | None = None,
    keys_int64s: list[int] | None = None,
    keys_strings: list[str] | None = None,
    values_floats: list[float] | None = None,
    values_int64s: list[int] | None = None,
    values_strings: list[str] | None = None,
    keys_tensor: np.ndarray | None = None,
    values_tensor: np.ndarray | None = None,
    default_tensor: np.ndarray | None = None,
) -> np.ndarray:
    given_keys = [k for k in (keys_floats, keys_int64s, keys_strings, keys_tensor) if k is not None]
    given_values = [v for v in (values_floats, values_int64s, values_strings, values_tensor) if v is not None]
    if len(given_keys) != 1 or len(given_values) != 1:
        raise InvalidArgument("LabelEncoder: set exactly one keys_* and exactly one values_* attribute")
    keys = given_keys[0].reshape(-1).tolist() if isinstance(given_keys[0], np.ndarray) else given_keys[0]
    if values_tensor is not None:
        values = values_tensor.reshape(-1)
        if default_tensor is not None:
            default: Any = default_tensor.reshape(-1)[0]
        else:
            default = "_Unused" if values.dtype == object else (-0.0 if values.dtype.kind == "f" else -1)
    elif values_floats is not None:
        values, default = np.asarray(values_floats, dtype=np.float32), default_float
    elif values_int64s is not None:
        values, default = np.asarray(values_int64s, dtype=np.int64), default_int64
    else:
        values, default = _object_array(list(values_strings or [])), default_string
    if len(keys) != len(values):
        raise InvalidArgument(f"LabelEncoder: {len(keys)} keys but {len(values)} values")
    if (X.dtype.kind in "OU") != (
        keys_strings is not None or (keys_tensor is not None and keys_tensor.dtype == object)
    ):
        raise InvalidArgument(f"LabelEncoder: the input type {X.dtype} does not match the keys' type")
    return _lookup(X, keys, values, default)


LabelEncoder_4 = kernel("LabelEncoder", since=4, domain=DOMAIN)(LabelEncoder_2)


@kernel("CategoryMapper", since=1, domain=DOMAIN)
def CategoryMapper(
    X: np.ndarray,
    *,
    cats_int64s: list[int] | None = None,
    cats_strings: list[str] | None = None,
    default_int64: int = -1,
    default_string: str = "_Unused",
) -> np.ndarray:
    ints, strings = cats_int64s or [], cats_strings or []
    if len(ints) != len(strings):
        raise InvalidArgument(f"CategoryMapper: {len(ints)} cats_int64s but {len(strings)} cats_strings")
    if X.dtype.kind in "OU":
        return _lookup(X, strings, np.asarray(ints, dtype=np.int64), default_int64)
    return _lookup(X, ints, _object_array(strings), default_string)


@kernel("OneHotEncoder", since=1, domain=DOMAIN)
def OneHotEncoder(
    X: np.ndarray, *, cats_int64s: list[int] | None = None, cats_strings: list[str] | None = None, zeros: int = 1
) -> np.ndarray:
    if X.dtype.kind in "OU":
        cats: list[Any] = cats_strings or []
        codes = _lookup(X, cats, np.arange(len(cats), dtype=np.int64), -1)
    else:
        cats = cats_int64s or []
        codes = _lookup(X.astype(np.int64), cats, np.arange(len(cats), dtype=np.int64), -1)
    if not zeros and (codes < 0).any():
        raise InvalidArgument("OneHotEncoder: an input value is not among the categories and zeros=0")
    return (codes[..., np.newaxis] == np.arange(len(cats))).astype(np.float32)


@kernel("DictVectorizer", since=1, domain=DOMAIN)
def DictVectorizer(
    X: dict[Any, Any],
    *,
    int64_vocabulary: list[int] | None = None,
    string_vocabulary: list[str] | None = None,
    _output_dtypes: tuple[np.dtype | None, ...] = (None,),
) -> np.ndarray:
    if not isinstance(X, dict):
        raise InvalidArgument(f"DictVectorizer: the input must be a map, got {type(X).__name__}")
    vocabulary: list[Any] = string_vocabulary if string_vocabulary else (int64_vocabulary or [])
    dtype = _output_dtypes[0] if _output_dtypes and _output_dtypes[0] is not None else None
    if dtype is None:  # undeclared: NumPy scalars keep their dtype; Python floats are float32, ints int64
        sample = next(iter(X.values()), 0.0)
        if isinstance(sample, np.generic):
            dtype = sample.dtype
        else:
            dtype = np.dtype({"f": np.float32, "i": np.int64, "b": np.int64}.get(np.asarray(sample).dtype.kind, object))
    zero: Any = "" if dtype == np.dtype(object) else 0
    out = np.empty((1, len(vocabulary)), dtype=dtype)
    out[0, :] = [X.get(key, zero) for key in vocabulary]
    return out


def _cast_value(value: Any, cast_to: str) -> Any:
    if cast_to == "TO_STRING":
        return value if isinstance(value, str) else f"{float(np.float32(value)):f}"  # C++ std::to_string
    number = float(value)  # strings parse like std::stof / std::stoll
    return number if cast_to == "TO_FLOAT" else int(number)


@kernel("CastMap", since=1, domain=DOMAIN)
def CastMap(X: dict[int, Any], *, cast_to: str = "TO_FLOAT", map_form: str = "DENSE", max_map: int = 1) -> np.ndarray:
    dtypes: dict[str, Any] = {"TO_FLOAT": np.float32, "TO_INT64": np.int64, "TO_STRING": object}
    if cast_to not in dtypes or map_form not in ("DENSE", "SPARSE"):
        raise InvalidArgument(f"CastMap: unsupported cast_to {cast_to!r} or map_form {map_form!r}")
    if not isinstance(X, dict):
        raise InvalidArgument(f"CastMap: the input must be a map, got {type(X).__name__}")
    if map_form == "DENSE":
        flat = [_cast_value(X[k], cast_to) for k in sorted(X)]
    else:
        if X and min(X) < 0:
            raise InvalidArgument(f"CastMap: SPARSE maps need non-negative keys, got {min(X)}")
        pad: Any = "0.f" if cast_to == "TO_STRING" else 0  # onnxruntime's pad values
        flat = [_cast_value(X[k], cast_to) if k in X else pad for k in range(max_map)]
    out = np.empty((1, len(flat)), dtype=dtypes[cast_to])
    out[0, :] = flat
    return out


@kernel("ZipMap", since=1, domain=DOMAIN)
def ZipMap(
    X: np.ndarray, *, classlabels_int64s: list[int] | None = None, classlabels_strings: list[str] | None = None
) -> list[dict[Any, float]]:
    labels: list[Any] = list(classlabels_strings) if classlabels_strings else list(classlabels_int64s or [])
    rows = X.reshape(1, -1) if X.ndim == 1 else X
    if rows.ndim != 2 or rows.shape[1] != len(labels):
        raise InvalidArgument(f"ZipMap: expected scores [N, {len(labels)}], got shape {list(X.shape)}")
    return [dict(zip(labels, row)) for row in rows.astype(np.float32).tolist()]


# ----- feature transforms ---------------------------------------------------------------------------------
@kernel("ArrayFeatureExtractor", since=1, domain=DOMAIN)
def ArrayFeatureExtractor(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    if X.ndim == 0:
        raise InvalidArgument("ArrayFeatureExtractor: X must have at least one dimension")
    indices = np.asarray(Y).reshape(-1)
    if indices.size == 0 or indices.dtype.kind not in "iu":
        raise InvalidArgument(
            f"ArrayFeatureExtractor: Y must be a non-empty int64 tensor, got {indices.dtype} {list(Y.shape)}"
        )
    stride = X.shape[-1]
    if indices.min() < 0 or indices.max() >= stride:
        raise InvalidArgument(f"ArrayFeatureExtractor: indices must be in [0, {stride}), got {indices.tolist()}")
    out = np.take(X, indices.astype(np.intp), axis=-1)
    return out.reshape(1, -1) if X.ndim == 1 else out


@kernel("Binarizer", since=1, domain=DOMAIN)
def Binarizer(X: np.ndarray, *, threshold: float = 0.0) -> np.ndarray:
    return (X > threshold).astype(X.dtype)


def _rows(X: np.ndarray, what: str) -> np.ndarray:
    if X.ndim not in (1, 2):
        raise InvalidArgument(f"{what}: the input must be [C] or [N, C], got shape {list(X.shape)}")
    return X.reshape(1, -1) if X.ndim == 1 else X


@kernel("Normalizer", since=1, domain=DOMAIN)
def Normalizer(X: np.ndarray, *, norm: str = "MAX") -> np.ndarray:
    rows = _rows(X, "Normalizer").astype(np.float64)
    if norm == "MAX":
        scale = rows.max(axis=1, keepdims=True) if rows.shape[1] else np.zeros((rows.shape[0], 1))
    elif norm == "L1":
        scale = np.abs(rows).sum(axis=1, keepdims=True)
    elif norm == "L2":
        scale = np.sqrt((rows * rows).sum(axis=1, keepdims=True))
    else:
        raise InvalidArgument(f"Normalizer: norm must be MAX, L1 or L2, got {norm!r}")
    out = rows / np.where(scale == 0, 1.0, scale)
    return out.astype(np.float32).reshape(X.shape)


def _per_feature(values: list[float] | list[int] | None, width: int, what: str, fill: float) -> np.ndarray:
    array = np.asarray(values if values else [fill], dtype=np.float64)
    if array.size not in (1, width):
        raise InvalidArgument(f"{what} must hold 1 or {width} values, got {array.size}")
    return array


@kernel("Scaler", since=1, domain=DOMAIN)
def Scaler(X: np.ndarray, *, offset: list[float] | None = None, scale: list[float] | None = None) -> np.ndarray:
    width = X.shape[-1] if X.ndim else 1
    shift = _per_feature(offset, width, "Scaler: offset", 0.0)
    factor = _per_feature(scale, width, "Scaler: scale", 1.0)
    return ((X.astype(np.float64) - shift) * factor).astype(np.float32)


@kernel("Imputer", since=1, domain=DOMAIN)
def Imputer(
    X: np.ndarray,
    *,
    imputed_value_floats: list[float] | None = None,
    imputed_value_int64s: list[int] | None = None,
    replaced_value_float: float = 0.0,
    replaced_value_int64: int = 0,
) -> np.ndarray:
    if bool(imputed_value_floats) == bool(imputed_value_int64s):
        raise InvalidArgument("Imputer: set exactly one of imputed_value_floats and imputed_value_int64s")
    if X.ndim == 0:
        raise InvalidArgument("Imputer: the input must have at least one dimension")
    floats = X.dtype.kind == "f"
    imputed = np.asarray(imputed_value_floats if floats else imputed_value_int64s, dtype=X.dtype)
    if imputed.size == 0:
        raise InvalidArgument(f"Imputer: a {X.dtype} input needs the {'float' if floats else 'int64'} imputed values")
    replaced = replaced_value_float if floats else replaced_value_int64
    stride = X.shape[1] if X.ndim > 1 else X.shape[0]
    flat = X.reshape(-1)
    fill = imputed[np.arange(flat.size) % stride] if imputed.size == stride else np.full(flat.size, imputed[0])
    hit = np.isnan(flat) if floats and np.isnan(replaced) else flat == replaced
    return np.where(hit, fill, flat).astype(X.dtype).reshape(X.shape)


@kernel("FeatureVectorizer", since=1, domain=DOMAIN)
def FeatureVectorizer(*X: np.ndarray, inputdimensions: list[int] | None = None) -> np.ndarray:
    dims = list(inputdimensions or [])
    if len(dims) != len(X):
        raise InvalidArgument(f"FeatureVectorizer: {len(X)} inputs but {len(dims)} inputdimensions")
    batch = 1 if not X or X[0].ndim == 1 else X[0].shape[0]
    out = np.zeros((batch, sum(dims)), dtype=np.float32)
    offset = 0
    for tensor, width in zip(X, dims):
        rows = tensor.reshape(1 if tensor.ndim == 1 else tensor.shape[0], -1)
        take = min(width, rows.shape[1])
        out[: rows.shape[0], offset : offset + take] = rows[:batch, :take]
        offset += width
    return out
