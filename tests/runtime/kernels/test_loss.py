"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against onnx's reference evaluator on generated inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels import loss
from tests.runtime.kernels.test_elementwise import check_against_reference, seeds

cases = st.fixed_dictionaries(
    {
        "n": st.integers(1, 3),
        "c": st.integers(1, 4),
        "spatial": st.lists(st.integers(1, 3), max_size=3),
        "dtype": st.sampled_from([np.float32, np.float64]),
        "target_dtype": st.sampled_from([np.int32, np.int64]),
        "reduction": st.sampled_from(["none", "sum", "mean"]),
        "weighted": st.booleans(),
        "ignore": st.sampled_from([None, "class", "negative", "beyond"]),
        "seed": seeds,
    }
)


def generate(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    rng = np.random.default_rng(case["seed"])
    n, c, spatial = case["n"], case["c"], case["spatial"]
    scores = rng.uniform(-4, 4, (n, c, *spatial)).astype(case["dtype"])
    target = rng.integers(0, c, (n, *spatial))
    attrs: dict[str, Any] = {"reduction": case["reduction"]}
    ignore = {None: None, "class": 0, "negative": -5, "beyond": c + 3}[case["ignore"]]
    if ignore is not None:
        attrs["ignore_index"] = ignore
        target = np.where(rng.random(target.shape) < 0.3, ignore, target)
    weight = rng.uniform(0.1, 2, c).astype(case["dtype"]) if case["weighted"] else None
    return scores, target.astype(case["target_dtype"]), weight, attrs


@settings(max_examples=20, deadline=None)
@given(case=cases)
def test_nll_loss_matches_the_reference(case: dict[str, Any]) -> None:
    x, target, weight, attrs = generate(case)
    log_prob = np.log(np.abs(x) / 5 + 1e-3).astype(x.dtype)  # any values work; log-probabilities are typical
    check_against_reference(
        "NegativeLogLikelihoodLoss", [log_prob, target, weight], rtol=1e-5, atol=1e-6, opset=22, **attrs
    )


@settings(max_examples=20, deadline=None)
@given(case=cases, log_prob=st.booleans())
def test_softmax_cross_entropy_matches_the_reference(case: dict[str, Any], log_prob: bool) -> None:
    x, target, weight, attrs = generate(case)
    out_dtypes = [x.dtype, x.dtype] if log_prob else [x.dtype]
    outputs = check_against_reference(
        "SoftmaxCrossEntropyLoss", [x, target, weight], out_dtypes=out_dtypes, rtol=1e-5, atol=1e-6, opset=13, **attrs
    )
    expected_shape = target.shape if attrs["reduction"] == "none" else ()
    assert outputs[0].shape == expected_shape


def test_mean_without_weights_averages_over_the_targets_not_ignored() -> None:
    log_prob = np.log(np.array([[0.5, 0.5], [0.25, 0.75], [0.1, 0.9]], dtype=np.float32))
    target = np.array([0, 1, 1], dtype=np.int64)
    out = loss.NegativeLogLikelihoodLoss(log_prob, target, ignore_index=1, reduction="mean")
    np.testing.assert_allclose(out, -np.log(0.5), rtol=1e-6)
    assert out.dtype == np.float32 and out.shape == ()


def test_softmax_cross_entropy_is_stable_for_large_scores() -> None:
    scores = np.array([[1000.0, 0.0], [0.0, -1000.0]], dtype=np.float32)
    out, log_prob = loss.SoftmaxCrossEntropyLoss(scores, np.array([1, 1]), reduction="none", _num_outputs=2)
    assert np.all(np.isfinite(log_prob))
    np.testing.assert_allclose(out, [1000.0, 1000.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("scores", "target", "weight", "attrs", "message"),
    [
        (np.zeros((2, 3)), np.array([0, 3]), None, {}, "out of range"),
        (np.zeros((2, 3)), np.array([0, -1]), None, {"ignore_index": 5}, "out of range"),
        (np.zeros((2, 3)), np.array([[0], [1]]), None, {}, "target must have shape"),
        (np.zeros((2, 3)), np.array([0, 1]), np.ones(2), {}, "weight"),
        (np.zeros((2, 3)), np.array([0, 1]), None, {"reduction": "max"}, "reduction"),
        (np.zeros(3), np.array([0]), None, {}, "input must be"),
    ],
)
def test_invalid_arguments_are_refused(
    scores: np.ndarray, target: np.ndarray, weight: np.ndarray | None, attrs: dict[str, Any], message: str
) -> None:
    for kernel in (loss.NegativeLogLikelihoodLoss, loss.SoftmaxCrossEntropyLoss):
        with pytest.raises(InvalidArgument, match=message):
            kernel(scores, target, weight, **attrs)
