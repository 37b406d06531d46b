"""Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss, as direct kernels.

The input is ``(N, C, d1, ..., dk)``, the target ``(N, d1, ..., dk)`` holds class indices in ``[0, C)`` or the
``ignore_index``. With ``c = target[n, d...]`` and ``w[n, d...] = weight[c]`` (1 without weights, 0 where the
target is the ignore_index):

    loss[n, d...] = -input[n, c, d...] * w[n, d...]

``reduction='none'`` returns that tensor, ``'sum'`` its sum, ``'mean'`` ``sum(loss) / sum(w)``. Without weights
that is the plain mean, over the targets that are not ignored (as onnx's reference and PyTorch compute it; the
spec's "mean(loss)" is silent on ignored targets); all targets ignored gives NaN (0 / 0).

SoftmaxCrossEntropyLoss applies the same to ``log_prob = log_softmax(scores, axis=1)``, computed stably as
``x - max - log(sum(exp(x - max)))`` over the class axis, and returns ``log_prob`` as its optional second output.

Arithmetic runs in float64 and results are rounded once to the input's dtype.
"""

from __future__ import annotations

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.registry import kernel

_REDUCTIONS = ("none", "sum", "mean")


def _check(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: str, op: str) -> None:
    if reduction not in _REDUCTIONS:
        raise InvalidArgument(f"{op}: reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")
    if input.ndim < 2:
        raise InvalidArgument(f"{op}: the input must be (N, C, d1, ..., dk), got shape {list(input.shape)}")
    expected = (input.shape[0], *input.shape[2:])
    if target.shape != expected:
        raise InvalidArgument(
            f"{op}: the target must have shape {list(expected)} for an input of shape {list(input.shape)}, "
            f"got {list(target.shape)}"
        )
    if target.dtype.kind not in "iu":
        raise InvalidArgument(f"{op}: the target must be int32 or int64, got {target.dtype}")
    if weight is not None and weight.shape != (input.shape[1],):
        raise InvalidArgument(f"{op}: the weight must have shape [{input.shape[1]}] (C), got {list(weight.shape)}")


def negative_log_likelihood(
    log_prob: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None,
    reduction: str,
    ignore_index: int | None,
    op: str,
) -> np.ndarray:
    """The (weighted, reduced) NLL of float64 ``log_prob`` in float64; see the module docstring."""
    classes = log_prob.shape[1]
    labels = target.astype(np.int64)
    ignored = labels == ignore_index if ignore_index is not None else np.zeros(labels.shape, dtype=bool)
    bad = ~ignored & ((labels < 0) | (labels >= classes))
    if bad.any():
        raise InvalidArgument(
            f"{op}: target value {int(labels[bad].reshape(-1)[0])} is out of range [0, {classes}) "
            f"and is not the ignore_index ({ignore_index})"
        )
    safe = np.where(ignored, 0, labels)
    picked = np.take_along_axis(log_prob, np.expand_dims(safe, 1), axis=1).squeeze(1)
    w = np.ones(labels.shape) if weight is None else weight.astype(np.float64)[safe]
    w = np.where(ignored, 0.0, w)
    loss = -picked * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.asarray(loss.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(loss.sum() / w.sum())


@kernel("NegativeLogLikelihoodLoss", since=12)
def NegativeLogLikelihoodLoss(
    input: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    *,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> np.ndarray:
    op = "NegativeLogLikelihoodLoss"
    _check(input, target, weight, reduction, op)
    loss = negative_log_likelihood(input.astype(np.float64), target, weight, reduction, ignore_index, op)
    return loss.astype(input.dtype)


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """``log(softmax(x))`` along ``axis`` in float64, without overflow."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


@kernel("SoftmaxCrossEntropyLoss", since=12)
def SoftmaxCrossEntropyLoss(
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    ignore_index: int | None = None,
    reduction: str = "mean",
    _num_outputs: int = 1,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    op = "SoftmaxCrossEntropyLoss"
    _check(scores, labels, weights, reduction, op)
    log_prob = log_softmax(scores.astype(np.float64), axis=1) if scores.size else scores.astype(np.float64)
    loss = negative_log_likelihood(log_prob, labels, weights, reduction, ignore_index, op).astype(scores.dtype)
    if _num_outputs > 1:
        return loss, log_prob.astype(scores.dtype)
    return loss
