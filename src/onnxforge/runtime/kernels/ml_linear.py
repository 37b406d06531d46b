"""ai.onnx.ml linear models and support vector machines: LinearRegressor, LinearClassifier, SVMRegressor and
SVMClassifier, with onnxruntime's conventions (inputs go through float32, outputs are float32).

- LinearRegressor: ``Y = X W^T + b`` with ``W = coefficients.reshape(targets, C)``, then the post-transform
  (a single target only honours PROBIT).
- LinearClassifier: scores ``X W^T + b`` with one row of ``W`` per intercept; the label is the arg-max class,
  or for a single score column ``labels[1]`` if the score is positive else ``labels[0]`` (``1`` / ``0``
  without two labels), and the scores become ``[1 - s, s]`` when there are two labels. ``multi_class`` is
  accepted and, as in onnxruntime, has no effect.
- The SVM kernel ``k(x, v)`` is ``x.v`` (LINEAR), ``(gamma x.v + coef0)^degree`` (POLY),
  ``exp(-gamma |x - v|^2)`` (RBF) or ``tanh(gamma x.v + coef0)`` (SIGMOID), ``kernel_params = [gamma,
  coef0, degree]``.
- SVMRegressor: ``y = sum_m coefficients[m] k(x, sv_m) + rho[0]`` (``X coefficients^T + rho[0]`` without
  support vectors); ``one_class`` maps it to ``+-1``.
- SVMClassifier (one-vs-one, libsvm layout): the decision value of classes ``i < j`` is
  ``sum_{m in i} coef[j-1, m] k_m + sum_{m in j} coef[i, m] k_m + rho[ij]``; a positive value votes for ``i``,
  else ``j``, and the label is the class with most votes. With ``prob_a`` / ``prob_b`` the scores are the
  class probabilities from the pairwise ``1 - logistic(A d + B)`` (libsvm's ``multiclass_probability``);
  otherwise the pairwise decision values (two classes: ``[-d, d]``, or ``[1 - d, d]`` under a transform).
  Without support vectors it is linear: ``X coef^T + rho[0]`` per class.
"""

from __future__ import annotations

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels.ml import DOMAIN, post_transform
from onnxforge.runtime.registry import kernel


def _rows(X: np.ndarray, what: str) -> np.ndarray:
    if X.ndim not in (1, 2):
        raise InvalidArgument(f"{what}: X must be [C] or [N, C], got shape {list(X.shape)}")
    rows = X.reshape(1, -1) if X.ndim == 1 else X
    return rows.astype(np.float32).astype(np.float64)


def _matrix(values: list[float] | None, rows: int, width: int, what: str) -> np.ndarray:
    array = np.asarray(values or [], dtype=np.float32).astype(np.float64)
    if array.size != rows * width:
        raise InvalidArgument(f"{what}: expected {rows} x {width} = {rows * width} coefficients, got {array.size}")
    return array.reshape(rows, width)


def _labels(ints: list[int] | None, strings: list[str] | None) -> np.ndarray:
    return np.asarray(list(strings), dtype=object) if strings else np.asarray(ints or [], dtype=np.int64)


@kernel("LinearRegressor", since=1, domain=DOMAIN)
def LinearRegressor(
    X: np.ndarray,
    *,
    coefficients: list[float] | None = None,
    intercepts: list[float] | None = None,
    post_transform: str = "NONE",
    targets: int = 1,
) -> np.ndarray:
    rows = _rows(X, "LinearRegressor")
    weights = _matrix(coefficients, targets, rows.shape[1], "LinearRegressor")
    scores = rows @ weights.T
    if intercepts:
        scores = scores + np.asarray(intercepts, dtype=np.float32)
    return _transform(scores, post_transform).astype(np.float32)


def _transform(scores: np.ndarray, name: str, add_second_class: int = -1, width: int = 0) -> np.ndarray:
    """The post-transform, padded with zero columns up to ``width`` (onnxruntime leaves them unwritten)."""
    out = post_transform(scores, name, add_second_class)
    if out.shape[1] < width:
        out = np.concatenate([out, np.zeros((out.shape[0], width - out.shape[1]))], axis=1)
    return out


@kernel("LinearClassifier", since=1, domain=DOMAIN)
def LinearClassifier(
    X: np.ndarray,
    *,
    coefficients: list[float],
    classlabels_ints: list[int] | None = None,
    classlabels_strings: list[str] | None = None,
    intercepts: list[float] | None = None,
    multi_class: int = 0,
    post_transform: str = "NONE",
) -> tuple[np.ndarray, np.ndarray]:
    labels = _labels(classlabels_ints, classlabels_strings)
    rows = _rows(X, "LinearClassifier")
    classes = len(intercepts or []) or len(coefficients) // max(rows.shape[1], 1)
    weights = _matrix(coefficients, classes, rows.shape[1], "LinearClassifier")
    scores = rows @ weights.T + np.asarray(intercepts or [0.0] * classes, dtype=np.float32)
    if classes == 1:
        positive = scores[:, 0] > 0
        if len(labels) == 2:
            label = np.where(positive, labels[1], labels[0])
            return label.astype(labels.dtype), _transform(scores, post_transform, 1, 2).astype(np.float32)
        yes, no = ("1", "0") if labels.dtype == object else (1, 0)
        label = np.where(positive, yes, no).astype(object if labels.dtype == object else np.int64)
        return label, _transform(scores, post_transform).astype(np.float32)
    if len(labels) < classes:
        raise InvalidArgument(f"LinearClassifier: {classes} score columns but {len(labels)} class labels")
    return labels[np.argmax(scores, axis=1)], _transform(scores, post_transform).astype(np.float32)


class _Kernel:
    """An SVM kernel ``k(X, V)`` with onnxruntime's parameters (float32 values)."""

    def __init__(self, kernel_type: str, kernel_params: list[float] | None) -> None:
        if kernel_type not in ("LINEAR", "POLY", "RBF", "SIGMOID"):
            raise InvalidArgument(f"SVM: unknown kernel_type {kernel_type!r}")
        params = [float(np.float32(p)) for p in (kernel_params or [])] + [0.0, 0.0, 0.0]
        self.kind, (self.gamma, self.coef0, self.degree) = kernel_type, params[:3]

    def __call__(self, X: np.ndarray, V: np.ndarray, constant: float = 0.0) -> np.ndarray:
        if self.kind == "RBF":
            distance = (X * X).sum(1)[:, None] + (V * V).sum(1)[None, :] - 2 * X @ V.T
            return np.exp(-self.gamma * np.maximum(distance, 0.0))
        if self.kind == "LINEAR":
            return X @ V.T + constant
        dot = self.gamma * (X @ V.T) + self.coef0
        return dot**self.degree if self.kind == "POLY" else np.tanh(dot)


@kernel("SVMRegressor", since=1, domain=DOMAIN)
def SVMRegressor(
    X: np.ndarray,
    *,
    coefficients: list[float] | None = None,
    kernel_params: list[float] | None = None,
    kernel_type: str = "LINEAR",
    n_supports: int = 0,
    one_class: int = 0,
    post_transform: str = "NONE",
    rho: list[float] | None = None,
    support_vectors: list[float] | None = None,
) -> np.ndarray:
    rows = _rows(X, "SVMRegressor")
    bias = float(np.float32((rho or [0.0])[0]))
    coef = np.asarray(coefficients or [], dtype=np.float32).astype(np.float64)
    if n_supports > 0:
        vectors = _matrix(support_vectors, n_supports, rows.shape[1], "SVMRegressor support_vectors")
        y = _Kernel(kernel_type, kernel_params)(rows, vectors) @ coef.reshape(n_supports, 1) + bias
    else:
        y = _Kernel("LINEAR", None)(rows, coef.reshape(1, -1), bias)
    if one_class:
        y = np.where(y > 0, 1.0, -1.0)
    return y.astype(np.float32)


def _pairwise_probabilities(pairs: np.ndarray, k: int) -> np.ndarray:
    """libsvm's ``multiclass_probability``: class probabilities from pairwise ones, for every row at once."""
    n = pairs.shape[0]
    r = np.zeros((n, k, k))
    index = 0
    for i in range(k - 1):
        for j in range(i + 1, k):
            r[:, i, j], r[:, j, i] = pairs[:, index], 1 - pairs[:, index]
            index += 1
    q = -r.transpose(0, 2, 1) * r
    diag = (r.transpose(0, 2, 1) ** 2).sum(axis=2) - np.einsum("nii->ni", r) ** 2
    q[:, np.arange(k), np.arange(k)] = diag
    p = np.full((n, k), 1.0 / k)
    active = np.ones(n, bool)
    for _ in range(100):
        qp = np.einsum("nij,nj->ni", q, p)
        pqp = (p * qp).sum(axis=1)
        active &= np.abs(qp - pqp[:, None]).max(axis=1) >= 0.005 / k
        if not active.any():
            break
        for i in range(k):
            diff = np.where(active, (-qp[:, i] + pqp) / q[:, i, i], 0.0)
            p[:, i] += diff
            pqp = (pqp + diff * (diff * q[:, i, i] + 2 * qp[:, i])) / (1 + diff) ** 2
            qp = (qp + diff[:, None] * q[:, i, :]) / (1 + diff)[:, None]
            p /= (1 + diff)[:, None]
    return p


@kernel("SVMClassifier", since=1, domain=DOMAIN)
def SVMClassifier(
    X: np.ndarray,
    *,
    classlabels_ints: list[int] | None = None,
    classlabels_strings: list[str] | None = None,
    coefficients: list[float] | None = None,
    kernel_params: list[float] | None = None,
    kernel_type: str = "LINEAR",
    post_transform: str = "NONE",
    prob_a: list[float] | None = None,
    prob_b: list[float] | None = None,
    rho: list[float] | None = None,
    support_vectors: list[float] | None = None,
    vectors_per_class: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    labels = _labels(classlabels_ints, classlabels_strings)
    k, rows = len(labels), _rows(X, "SVMClassifier")
    coef = np.asarray(coefficients or [], dtype=np.float32).astype(np.float64)
    offsets = np.asarray(rho or [0.0], dtype=np.float32).astype(np.float64)
    counts = list(vectors_per_class or [])
    proba = np.asarray(prob_a or [], dtype=np.float32).astype(np.float64)
    probb = np.asarray(prob_b or [], dtype=np.float32).astype(np.float64)
    all_positive = bool((coef >= 0).all())
    pairs = k * (k - 1) // 2
    if sum(counts) == 0:  # liblinear: one weight row per class
        scores = _Kernel("LINEAR", None)(rows, _matrix(coefficients, k, rows.shape[1], "SVMClassifier"), offsets[0])
        winner, best = np.argmax(scores, axis=1), scores.max(axis=1)
        extra = -1
    else:
        if len(counts) != k:
            raise InvalidArgument(f"SVMClassifier: {len(counts)} vectors_per_class entries for {k} classes")
        total = sum(counts)
        vectors = _matrix(support_vectors, total, rows.shape[1], "SVMClassifier support_vectors")
        kernels = _Kernel(kernel_type, kernel_params)(rows, vectors)
        coef = coef[: (k - 1) * total].reshape(k - 1, total)
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        decisions, votes, index = np.zeros((rows.shape[0], pairs)), np.zeros((rows.shape[0], k), np.int64), 0
        for i in range(k - 1):
            for j in range(i + 1, k):
                span_i, span_j = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
                d = kernels[:, span_i] @ coef[j - 1, span_i] + kernels[:, span_j] @ coef[i, span_j] + offsets[index]
                decisions[:, index] = d
                votes[np.arange(rows.shape[0]), np.where(d > 0, i, j)] += 1
                index += 1
        winner, best = np.argmax(votes, axis=1), np.zeros(rows.shape[0])
        if len(proba):
            chance = np.clip(1 - 1 / (1 + np.exp(-(decisions * proba[:pairs] + probb[:pairs]))), 1e-7, 1 - 1e-7)
            scores, extra = _pairwise_probabilities(chance, k), -1
        else:
            scores, extra = decisions, (2 if post_transform == "NONE" else 0) if k <= 2 else -1
    if k == 2 and not len(proba):
        pick = (best >= 0.5) if all_positive else (best > 0)
        winner = np.where(pick, 1, winner)
    out = _transform(scores, post_transform, extra, 2 if k == 2 else 0)
    return labels[winner], out.astype(np.float32)
