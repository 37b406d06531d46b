"""Linear algebra: Gemm ``Y = alpha * A' @ B' + beta * C`` (A', B' optionally transposed), numpy-style
MatMul, Einsum and Det.

Float matmuls go to BLAS through ``np.matmul``; float16/bfloat16 run through float32 (numpy has no
half-precision BLAS, and its own half loops are orders of magnitude slower). A MatMul of a stack of
matrices by one matrix is folded into a single 2-D product. Gemm with a constant B pre-scales it by
alpha (and casts it) once at plan-build time, and a constant C is pre-scaled by beta.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime import threads
from onnxforge.runtime.registry import kernel


def _blas_dtype(dtype: np.dtype) -> np.dtype:
    """Where float matmuls run: float32/float64 natively, other floats via float32, integers as they are."""
    if dtype.kind in "iu" or dtype in (np.float32, np.float64):
        return dtype
    return np.dtype(np.float32)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.ndim > 2 and b.ndim == 2 and a.flags.c_contiguous:
        # One (batch*M, K) @ (K, N) product instead of numpy's loop of small per-matrix products.
        return threads.matmul(a.reshape(-1, a.shape[-1]), b).reshape(*a.shape[:-1], b.shape[-1])
    return threads.matmul(a, b)


@kernel("MatMul", since=1)
def MatMul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    if A.ndim == 0 or B.ndim == 0:
        raise InvalidArgument(f"MatMul inputs must have rank >= 1, got shapes {list(A.shape)} and {list(B.shape)}")
    if A.shape[-1] != B.shape[0 if B.ndim == 1 else -2]:
        raise InvalidArgument(f"MatMul shapes {list(A.shape)} and {list(B.shape)} do not agree on the inner dimension")
    dtype = _blas_dtype(A.dtype)
    y = _matmul(A.astype(dtype, copy=False), B.astype(dtype, copy=False))
    return np.asarray(y).astype(A.dtype, copy=False)


def _scaled(value: np.ndarray, factor: float, dtype: np.dtype) -> np.ndarray:
    """``factor * value`` in the float ``dtype`` (no float64 detour from a Python float)."""
    if factor == 1.0:
        return value.astype(dtype, copy=False)
    return value.astype(dtype, copy=False) * dtype.type(factor)


def _gemm(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray | None,
    alpha: float,
    beta: float,
    trans_a: int,
    trans_b: int,
    b_scaled: bool = False,
    c_scaled: bool = False,
) -> np.ndarray:
    if a.ndim != 2 or b.ndim != 2:
        raise InvalidArgument(f"Gemm A and B must be matrices, got shapes {list(a.shape)} and {list(b.shape)}")
    dtype = _blas_dtype(a.dtype)
    a2 = a.T if trans_a else a
    b2 = b.T if trans_b else b
    if a2.shape[1] != b2.shape[0]:
        raise InvalidArgument(
            f"Gemm: A' {list(a2.shape)} and B' {list(b2.shape)} (after transA={trans_a}, transB={trans_b}) do not agree"
        )
    if dtype.kind in "iu" and (alpha != 1.0 or (c is not None and beta not in (0.0, 1.0))):
        # Integer Gemm with fractional factors: scale and sum in float64, truncate once (as the reference).
        wide = np.matmul(a2, b2).astype(np.float64) * alpha
        if c is not None and beta != 0.0:
            wide = wide + c.astype(np.float64) * beta
        return wide.astype(a.dtype)
    b2 = b2.astype(dtype, copy=False) if b_scaled else _scaled(b2, alpha, dtype)
    y = threads.matmul(a2.astype(dtype, copy=False), b2)
    if c is not None and beta != 0.0:
        term = c.astype(dtype, copy=False) if c_scaled else _scaled(c, beta, dtype)
        try:
            y += term
        except ValueError as exc:
            raise InvalidArgument(f"Gemm: C of shape {list(c.shape)} does not broadcast to {list(y.shape)}") from exc
    return y.astype(a.dtype, copy=False)


def _prepare_gemm(
    constants: list[Any], *, alpha: float = 1.0, beta: float = 1.0, transA: int = 0, transB: int = 0, **_: Any
) -> Callable[..., np.ndarray] | None:
    b = constants[1] if len(constants) > 1 else None
    c = constants[2] if len(constants) > 2 else None
    if not isinstance(b, np.ndarray) or b.ndim != 2 or b.dtype.kind in "iu":
        return None
    dtype = _blas_dtype(b.dtype)
    b_dtype = b.dtype
    # BLAS takes a transposed operand as it is (a flag, no copy), so B.T stays a view of the weight: a
    # transposed copy would cost seconds and, while the weight lives on, double its memory. Only a scaled
    # or broadcast (zero-stride) weight is materialised.
    b_packed = _scaled(b.T if transB else b, alpha, dtype)
    if 0 in b_packed.strides:
        b_packed = np.ascontiguousarray(b_packed)
    c_packed = _scaled(c, beta, dtype) if isinstance(c, np.ndarray) else None

    def gemm_packed(A: np.ndarray, B: np.ndarray, C: np.ndarray | None = None) -> np.ndarray:
        if A.dtype != b_dtype:
            return _gemm(A, B, C, alpha, beta, transA, transB)
        return _gemm(
            A,
            b_packed,
            c_packed if c_packed is not None else C,
            alpha,
            beta,
            transA,
            0,
            b_scaled=True,
            c_scaled=c_packed is not None,
        )

    return gemm_packed


@kernel("Gemm", since=1, prepare=_prepare_gemm)
def Gemm_1(
    A: np.ndarray,
    B: np.ndarray,
    C: np.ndarray | None = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    broadcast: int = 0,
    transA: int = 0,
    transB: int = 0,
) -> np.ndarray:
    return _gemm(A, B, C, alpha, beta, transA, transB)


@kernel("Gemm", since=7, prepare=_prepare_gemm)
def Gemm_7(
    A: np.ndarray,
    B: np.ndarray,
    C: np.ndarray | None = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    transA: int = 0,
    transB: int = 0,
) -> np.ndarray:
    return _gemm(A, B, C, alpha, beta, transA, transB)


class _EinsumPlans:
    """np.einsum's contraction path for each input-shape signature, computed once."""

    def __init__(self, equation: str) -> None:
        self.equation = equation.replace(" ", "")
        self._paths: dict[tuple[tuple[int, ...], ...], list[Any]] = {}

    def __call__(self, *operands: np.ndarray) -> np.ndarray:
        key = tuple(op.shape for op in operands)
        path = self._paths.get(key)
        if path is None:
            try:
                path = np.einsum_path(self.equation, *operands, optimize="optimal" if len(operands) < 5 else "greedy")[
                    0
                ]
            except ValueError as exc:
                raise InvalidArgument(
                    f"Einsum '{self.equation}' does not fit shapes {[list(k) for k in key]}: {exc}"
                ) from exc
            self._paths[key] = path
        return np.einsum(self.equation, *operands, optimize=path)


def _einsum(plans: _EinsumPlans, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
    if not inputs:
        raise InvalidArgument("Einsum needs at least one input")
    out_dtype = inputs[0].dtype
    dtype = _blas_dtype(out_dtype)
    y = np.asarray(plans(*(x.astype(dtype, copy=False) for x in inputs))).astype(out_dtype, copy=False)
    # A pure relabelling (transpose, diagonal) comes back as a view of an input; outputs must own their data.
    if any(np.may_share_memory(y, x) for x in inputs):
        y = y.copy()
    return y


def _prepare_einsum(constants: list[Any], *, equation: str = "", **_: Any) -> Callable[..., np.ndarray]:
    plans = _EinsumPlans(equation)

    def einsum_planned(*Inputs: np.ndarray) -> np.ndarray:
        return _einsum(plans, Inputs)

    return einsum_planned


@kernel("Einsum", since=12, prepare=_prepare_einsum)
def Einsum(*Inputs: np.ndarray, equation: str = "") -> np.ndarray:
    return _einsum(_EinsumPlans(equation), Inputs)


@kernel("Det", since=11)
def Det(X: np.ndarray) -> np.ndarray:
    if X.ndim < 2 or X.shape[-1] != X.shape[-2]:
        raise InvalidArgument(f"Det needs (..., M, M) input, got shape {list(X.shape)}")
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    return np.asarray(np.linalg.det(X.astype(dtype, copy=False))).astype(X.dtype, copy=False)
