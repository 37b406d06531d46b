"""Random generators: RandomNormal, RandomUniform, RandomNormalLike, RandomUniformLike, Bernoulli, Multinomial.

The distributions, element-wise and independent:

- ``RandomNormal(Like)``: ``y ~ N(mean, scale**2)``, drawn as ``z * scale + mean`` with ``z ~ N(0, 1)``.
- ``RandomUniform(Like)``: ``y ~ U[low, high)``, drawn as ``u * (high - low) + low`` with ``u ~ U[0, 1)``.
- ``Bernoulli``: ``y = 1`` with probability ``p = x`` (which must lie in [0, 1]), else 0.
- ``Multinomial``: each row of the ``[batch, classes]`` input holds unnormalised log-probabilities;
  ``P(class c) = softmax(row)[c]``. The ``[batch, sample_size]`` output draws ``sample_size`` classes per
  row, independently (with replacement), by inverting the cumulative distribution at ``u ~ U[0, 1)``.

Seeds: with a ``seed`` attribute every run draws from a fresh ``np.random.RandomState(int(seed))``, so a
seeded node is a pure function: the same on every run and in every session, and (for all but Multinomial,
which onnx's reference does not implement) equal to what ``onnx.reference.ReferenceEvaluator`` computes,
since the draws follow its recipe (``randn``, ``rand``, ``binomial``). onnxruntime instead keeps one
generator per seeded kernel that advances from run to run; the spec leaves this open. Without a seed, every
run draws fresh values from an entropy-seeded generator. ``Dropout``'s mask lives in ``tensor_ops``.

Each arithmetic step is rounded to the output dtype (computed in at least float32), like the reference.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from onnxforge._errors import InvalidArgument
from onnxforge.ir.dtypes import np_dtype_for
from onnxforge.runtime.kernels._args import checked_shape
from onnxforge.runtime.registry import kernel

_FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
)


def random_state(seed: float | None) -> np.random.RandomState:
    """A generator for one run: seeded by ``int(seed)`` (modulo 2**32) when given, else from OS entropy."""
    if seed is None or math.isnan(seed):
        return np.random.RandomState()
    return np.random.RandomState(int(seed) % 2**32)


def _float_dtype(dtype: int, op: str) -> np.dtype:
    if dtype not in _FLOAT_TYPES:
        name = onnx.TensorProto.DataType.Name(dtype) if dtype in onnx.TensorProto.DataType.values() else str(dtype)
        raise InvalidArgument(f"{op}: dtype must be float16, float, double or bfloat16, got {name}")
    return np_dtype_for(dtype)


def _like_dtype(x: np.ndarray, dtype: int | None, op: str) -> np.dtype:
    if dtype is not None:
        return _float_dtype(dtype, op)
    if x.dtype.kind == "f" or x.dtype == np_dtype_for(onnx.TensorProto.BFLOAT16):
        return x.dtype
    raise InvalidArgument(f"{op}: the input is {x.dtype}; give a float dtype attribute for the output")


def _affine(draws: np.ndarray, dtype: np.dtype, scale: float, shift: float) -> np.ndarray:
    """``draws * scale + shift``, rounded to ``dtype`` after each step, each step in at least float32.

    That is the reference's in-place arithmetic with float32 attributes (and ml_dtypes' for bfloat16).
    """
    compute = np.promote_types(dtype, np.float32) if dtype.kind == "f" else np.dtype(np.float32)
    result = draws.astype(dtype).astype(compute)
    result *= compute.type(scale)
    result = result.astype(dtype).astype(compute)
    result += compute.type(shift)
    return result.astype(dtype)


def _normal(shape: tuple[int, ...], dtype: np.dtype, mean: float, scale: float, seed: float | None) -> np.ndarray:
    return _affine(random_state(seed).randn(*shape), dtype, scale, mean)


def _uniform(shape: tuple[int, ...], dtype: np.dtype, low: float, high: float, seed: float | None) -> np.ndarray:
    if not low <= high:
        raise InvalidArgument(f"RandomUniform: low ({low}) must not exceed high ({high})")
    width = float(np.float32(high) - np.float32(low))  # attributes are float32, and so is their difference
    return _affine(random_state(seed).rand(*shape), dtype, width, low)


@kernel("RandomNormal", since=1)
def RandomNormal(
    *,
    shape: list[int],
    dtype: int = onnx.TensorProto.FLOAT,
    mean: float = 0.0,
    scale: float = 1.0,
    seed: float | None = None,
) -> np.ndarray:
    dims = checked_shape(shape, "RandomNormal")
    return _normal(dims, _float_dtype(dtype, "RandomNormal"), mean, scale, seed)


@kernel("RandomUniform", since=1)
def RandomUniform(
    *,
    shape: list[int],
    dtype: int = onnx.TensorProto.FLOAT,
    high: float = 1.0,
    low: float = 0.0,
    seed: float | None = None,
) -> np.ndarray:
    dims = checked_shape(shape, "RandomUniform")
    return _uniform(dims, _float_dtype(dtype, "RandomUniform"), low, high, seed)


@kernel("RandomNormalLike", since=1)
def RandomNormalLike(
    input: np.ndarray, *, dtype: int | None = None, mean: float = 0.0, scale: float = 1.0, seed: float | None = None
) -> np.ndarray:
    return _normal(input.shape, _like_dtype(input, dtype, "RandomNormalLike"), mean, scale, seed)


@kernel("RandomUniformLike", since=1)
def RandomUniformLike(
    input: np.ndarray, *, dtype: int | None = None, high: float = 1.0, low: float = 0.0, seed: float | None = None
) -> np.ndarray:
    return _uniform(input.shape, _like_dtype(input, dtype, "RandomUniformLike"), low, high, seed)


@kernel("Bernoulli", since=15)
def Bernoulli(input: np.ndarray, *, dtype: int | None = None, seed: float | None = None) -> np.ndarray:
    out_dtype = input.dtype if dtype is None else np_dtype_for(dtype)
    p = input.astype(np.float64)
    if p.size and not (np.all(p >= 0) and np.all(p <= 1)):  # also refuses NaN
        bad = p[~((p >= 0) & (p <= 1))].reshape(-1)[0]
        raise InvalidArgument(f"Bernoulli: probabilities must lie in [0, 1], got {bad}")
    # binomial(1, p), not uniform < p: the reference's recipe, so seeded draws agree with it
    return random_state(seed).binomial(1, p).astype(out_dtype).reshape(input.shape)


@kernel("Multinomial", since=7)
def Multinomial(
    input: np.ndarray, *, dtype: int = onnx.TensorProto.INT32, sample_size: int = 1, seed: float | None = None
) -> np.ndarray:
    if dtype not in (onnx.TensorProto.INT32, onnx.TensorProto.INT64):
        raise InvalidArgument(f"Multinomial: dtype must be int32 or int64, got {dtype}")
    if input.ndim != 2:
        raise InvalidArgument(f"Multinomial: the input must be [batch_size, class_size], got shape {list(input.shape)}")
    if sample_size < 1:
        raise InvalidArgument(f"Multinomial: sample_size must be positive, got {sample_size}")
    batch, classes = input.shape
    checked_shape((batch, sample_size), "Multinomial")
    if classes == 0:
        raise InvalidArgument("Multinomial: class_size must be positive")
    logits = input.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    if batch and not np.all(np.isfinite(top)):
        raise InvalidArgument("Multinomial: every row needs a finite largest log-probability")
    weights = np.exp(logits - top)
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]  # the last entry is exactly 1, so every u in [0, 1) finds a class
    draws = random_state(seed).rand(batch, sample_size)
    # the first class whose cumulative probability exceeds u; zero-probability classes are never chosen
    samples = np.stack([np.searchsorted(cdf[i], draws[i], side="right") for i in range(batch)]) if batch else draws
    return np.minimum(samples, classes - 1).astype(np_dtype_for(dtype)).reshape(batch, sample_size)
