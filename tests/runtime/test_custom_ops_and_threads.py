"""Custom Python ops through the public decorator, and intra_op_num_threads really setting the run's threads."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxforge
from onnxforge import InferenceSession, InvalidGraph, NotImplemented, SessionOptions, kernel
from onnxforge.runtime.threads import current_blas_threads, workers

SEEN_THREADS: list[tuple[int, int]] = []


@kernel("ScaledTanh", since=1, domain="test.onnxforge")
def ScaledTanh(x: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    return (scale * np.tanh(x)).astype(x.dtype)


@kernel("ObserveBlasThreads", since=1, domain="test.onnxforge")
def ObserveBlasThreads(x: np.ndarray) -> np.ndarray:
    SEEN_THREADS.append((current_blas_threads(), workers()))
    return x


def _custom_model(op: str, **attrs: object) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], domain="test.onnxforge", **attrs)],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("test.onnxforge", 1)]
    )


def test_custom_python_op_runs_end_to_end_with_its_attribute() -> None:
    x = np.array([-1.0, 0.0, 2.0], np.float32)
    (y,) = InferenceSession(_custom_model("ScaledTanh", scale=3.0).SerializeToString()).run(None, {"x": x})
    np.testing.assert_allclose(y, 3.0 * np.tanh(x), rtol=1e-6)
    assert y.dtype == np.float32


def test_custom_op_with_unknown_attribute_fails_at_load() -> None:
    with pytest.raises(NotImplemented, match="attribute 'shift'"):
        InferenceSession(_custom_model("ScaledTanh", shift=1.0))


def test_custom_op_missing_a_required_attribute_fails_at_load() -> None:
    @kernel("NeedsScale", since=1, domain="test.onnxforge")
    def NeedsScale(x: np.ndarray, *, scale: float) -> np.ndarray:
        return x * scale

    with pytest.raises(InvalidGraph, match=r"NeedsScale.*required attribute\(s\) \['scale'\] missing"):
        InferenceSession(_custom_model("NeedsScale"))


def test_unregistered_custom_op_fails_at_load_naming_domain() -> None:
    with pytest.raises(NotImplemented, match=r"Nope\(1\).*test\.onnxforge"):
        InferenceSession(_custom_model("Nope"))


@pytest.mark.parametrize("threads", [1, 2])
def test_intra_op_threads_set_the_pool_and_single_thread_blas_during_run_only(threads: int) -> None:
    """Kernels split big work across ``threads`` parts themselves; BLAS stays single-threaded inside a run."""
    before = current_blas_threads()
    options = SessionOptions()
    options.intra_op_num_threads = threads
    SEEN_THREADS.clear()
    InferenceSession(_custom_model("ObserveBlasThreads"), sess_options=options).run(
        None, {"x": np.zeros(3, np.float32)}
    )
    assert SEEN_THREADS == [(1, threads)]
    assert workers() == 1
    assert current_blas_threads() == before
    assert onnxforge.get_version_string()
