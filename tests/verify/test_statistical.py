"""The conformance runner's statistical check of random cases passes the real kernels and fails wrong ones.

Wrong kernels replace the real ones in the registry for one test (``monkeypatch`` restores them), so the very
same onnx cases run against a deliberately broken engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxforge.runtime.kernels.random import random_state
from onnxforge.runtime.registry import REGISTRY
from onnxforge.verify.conformance import check_statistically, collect_cases, run_case

CASES = {case.name: case for case in collect_cases(["test_bernoulli", "test_training_dropout"])}
BERNOULLI = sorted(name for name in CASES if name.startswith("test_bernoulli"))


def replace_kernel(monkeypatch: pytest.MonkeyPatch, op: str, fn: Callable[..., Any]) -> None:
    """Make ``fn`` the only kernel of ai.onnx ``op`` (at every opset) for the current test."""
    real = REGISTRY.resolve("", op, onnx.defs.onnx_opset_version())
    assert real is not None
    fake = dataclasses.replace(real, fn=fn, since=1, prepare=None, accepts_any_attribute=True)
    monkeypatch.setitem(REGISTRY._by_op, ("", op), [fake])


@pytest.mark.parametrize("name", BERNOULLI)
def test_real_bernoulli_passes(name: str) -> None:
    assert check_statistically(CASES[name]) is None
    result = run_case(CASES[name])
    assert result.passed, result.reason


@pytest.mark.parametrize("name", ["test_bernoulli", "test_bernoulli_double", "test_bernoulli_seed"])
def test_bernoulli_of_all_ones_fails(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    def all_ones(x: np.ndarray, *, dtype: int | None = None, **_: Any) -> np.ndarray:
        return np.ones(x.shape, dtype=x.dtype if dtype is None else helper.tensor_dtype_to_np_dtype(dtype))

    replace_kernel(monkeypatch, "Bernoulli", all_ones)
    failure = check_statistically(CASES[name])
    assert failure is not None and "mean" in failure
    assert not run_case(CASES[name]).passed


def test_inverted_bernoulli_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def one_minus_p(x: np.ndarray, *, dtype: int | None = None, **_: Any) -> np.ndarray:
        return (np.random.random(x.shape) >= x).astype(x.dtype)

    replace_kernel(monkeypatch, "Bernoulli", one_minus_p)
    assert not run_case(CASES["test_bernoulli"]).passed


def test_bernoulli_with_values_other_than_0_and_1_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def scaled(x: np.ndarray, *, dtype: int | None = None, **_: Any) -> np.ndarray:
        return (2 * (np.random.random(x.shape) < x / 2)).astype(x.dtype)  # the mean is right, the support not

    replace_kernel(monkeypatch, "Bernoulli", scaled)
    failure = check_statistically(CASES["test_bernoulli"])
    assert failure is not None and "other than 0 and 1" in failure


def test_bernoulli_ignoring_its_seed_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def unseeded(x: np.ndarray, *, dtype: int | None = None, seed: float | None = None) -> np.ndarray:
        return random_state(None).binomial(1, x.astype(np.float64)).astype(x.dtype)

    replace_kernel(monkeypatch, "Bernoulli", unseeded)
    failure = check_statistically(CASES["test_bernoulli_seed"])
    assert failure is not None and "seeded" in failure
    assert check_statistically(CASES["test_bernoulli"]) is None  # without a seed it is a fine Bernoulli


def test_expanded_bernoulli_with_a_constant_uniform_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def half(x: np.ndarray, *, dtype: int | None = None, **_: Any) -> np.ndarray:
        return np.full(x.shape, 0.5, dtype=x.dtype if dtype is None else helper.tensor_dtype_to_np_dtype(dtype))

    replace_kernel(monkeypatch, "RandomUniformLike", half)
    assert check_statistically(CASES["test_bernoulli_expanded"]) is not None


@pytest.mark.parametrize("name", ["test_training_dropout", "test_training_dropout_mask"])
def test_dropout_in_training_mode(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    assert check_statistically(CASES[name]) is None  # against onnx's reference, as no formula is built in

    def unscaled(data: np.ndarray, ratio: Any = None, training_mode: Any = None, **kw: Any) -> Any:
        keep = np.random.random(data.shape) >= float(ratio)
        out = np.where(keep, data, 0).astype(data.dtype)  # forgets the 1 / (1 - ratio) scale
        return (out, keep) if kw.get("_num_outputs", 1) > 1 else out

    replace_kernel(monkeypatch, "Dropout", unscaled)
    assert check_statistically(CASES[name]) is not None


def generator_case(op: str, elem_type: int = TensorProto.FLOAT, **attrs: Any) -> SimpleNamespace:
    """A one-node ``op`` case whose expected values came from some other generator (only dtype/shape matter)."""
    node = helper.make_node(op, [], ["y"], shape=[3, 4], dtype=elem_type, **attrs)
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", elem_type, [3, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    expected = np.random.default_rng(0).random((3, 4)).astype(helper.tensor_dtype_to_np_dtype(elem_type))
    return SimpleNamespace(name=f"test_{op}", model=model, data_sets=[([], [expected])], rtol=1e-3, atol=1e-7)


def test_random_normal_is_checked_against_its_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    case = generator_case("RandomNormal", mean=1.0, scale=2.0)
    assert run_case(case).passed

    def narrow(*, shape: list[int], scale: float = 1.0, mean: float = 0.0, **_: Any) -> np.ndarray:
        return (np.random.standard_normal(shape) * scale / 2 + mean).astype(np.float32)  # half the spread

    replace_kernel(monkeypatch, "RandomNormal", narrow)
    failure = check_statistically(case)
    assert failure is not None and "variance" in failure


@pytest.mark.parametrize("elem_type", [TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE])
def test_random_uniform_is_checked_against_its_formula(monkeypatch: pytest.MonkeyPatch, elem_type: int) -> None:
    case = generator_case("RandomUniform", elem_type, low=0.1, high=0.3, seed=5.0)
    assert run_case(case).passed

    def too_wide(
        *, shape: list[int], dtype: int = 1, low: float = 0.0, high: float = 1.0, seed: float | None = None
    ) -> np.ndarray:
        wide = random_state(seed).uniform(low - 0.05, high + 0.05, shape)  # the right mean, outside the support
        return wide.astype(helper.tensor_dtype_to_np_dtype(dtype))

    replace_kernel(monkeypatch, "RandomUniform", too_wide)
    failure = check_statistically(case)
    assert failure is not None and "support" in failure
