"""Signal kernels (signal.py): DFT (opsets 17 and 20), STFT, the Hann / Hamming / Blackman windows and
MelWeightMatrix against onnx's reference evaluator and NumPy's FFT, on hypothesis-drawn shapes."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument

Feed = dict[str, np.ndarray | None]


def build(op: str, feed: Feed, attrs: dict[str, Any] | None = None, opset: int = 20) -> onnx.ModelProto:
    names = [name if value is not None else "" for name, value in feed.items()]
    while names and not names[-1]:
        names.pop()
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), None)
        for name, v in feed.items()
        if v is not None
    ]
    proto = helper.make_model(
        helper.make_graph([node], "g", inputs, [helper.make_value_info("y", onnx.TypeProto())]),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    proto.ir_version = 9
    return proto


def run(proto: onnx.ModelProto, feed: Feed) -> np.ndarray:
    return InferenceSession(proto.SerializeToString()).run(None, {k: v for k, v in feed.items() if v is not None})[0]


def check(op: str, feed: Feed, attrs: dict[str, Any] | None = None, opset: int = 20, tol: float = 1e-4) -> np.ndarray:
    proto = build(op, feed, attrs, opset)
    got = run(proto, feed)
    want = np.asarray(ReferenceEvaluator(proto).run(None, {k: v for k, v in feed.items() if v is not None})[0])
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, got.shape, want.shape)
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)
    return got


def scalar(value: int, dtype: Any = np.int64) -> np.ndarray:
    return np.array(value, dtype=dtype)


signals = st.tuples(st.integers(1, 3), st.integers(2, 9), st.sampled_from([1, 2]))


@settings(max_examples=20, deadline=None)
@given(
    signals, st.sampled_from([1, -2]), st.booleans(), st.booleans(), st.none() | st.integers(2, 12), st.integers(0, 9)
)
def test_dft_20_matches_the_reference(
    shape: tuple[int, int, int], axis: int, inverse: bool, onesided: bool, length: int | None, seed: int
) -> None:
    batch, n, parts = shape
    if onesided and inverse:
        parts = 2
    x = np.random.default_rng(seed).standard_normal((batch, n, parts)).astype(np.float32)
    feed: Feed = {"x": x, "n": None if length is None else scalar(length), "axis": scalar(axis)}
    check("DFT", feed, {"inverse": int(inverse), "onesided": int(onesided)})


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 8), st.integers(2, 8), st.sampled_from([1, 2, -2, -3]), st.booleans(), st.sampled_from([1, 2]))
def test_dft_17_takes_its_axis_as_an_attribute(rows: int, cols: int, axis: int, inverse: bool, parts: int) -> None:
    x = np.random.default_rng(rows * cols).standard_normal((2, rows, cols, parts)).astype(np.float64)
    check("DFT", {"x": x}, {"axis": axis, "inverse": int(inverse)}, opset=17)


def test_dft_round_trips_through_rfft_and_irfft() -> None:
    signal = np.random.default_rng(1).standard_normal((3, 10, 1)).astype(np.float32)
    spectrum = run(build("DFT", {"x": signal}, {"onesided": 1}), {"x": signal})
    assert spectrum.shape == (3, 6, 2)
    feed: Feed = {"x": spectrum, "n": scalar(10, np.int32)}
    back = run(build("DFT", feed, {"onesided": 1, "inverse": 1}), feed)
    assert back.shape == (3, 10, 1) and back.dtype == np.float32
    np.testing.assert_allclose(back, signal, atol=1e-5)


def test_dft_default_default_length_of_an_irfft_is_even() -> None:
    spectrum = np.fft.rfft(np.arange(8.0))
    x = np.stack([spectrum.real, spectrum.imag], axis=-1)[np.newaxis].astype(np.float64)
    out = run(build("DFT", {"x": x}, {"onesided": 1, "inverse": 1}), {"x": x})
    np.testing.assert_allclose(out[0, :, 0], np.arange(8.0), atol=1e-12)


def test_dft_rejects_the_complex_axis() -> None:
    x = np.zeros((2, 4, 2), np.float32)
    with pytest.raises(InvalidArgument, match="axis"):
        run(build("DFT", {"x": x, "n": None, "axis": scalar(2)}), {"x": x, "axis": scalar(2)})


@settings(max_examples=20, deadline=None)
@given(
    st.integers(1, 2),
    st.integers(8, 20),
    st.integers(1, 5),
    st.integers(2, 8),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_stft_matches_the_reference(
    batch: int, length: int, step: int, frame: int, with_window: bool, onesided: bool, complex_input: bool
) -> None:
    rng = np.random.default_rng(length * frame)
    signal = rng.standard_normal((batch, length, 2 if complex_input else 1)).astype(np.float32)
    window = np.hanning(frame).astype(np.float32) if with_window else None
    feed: Feed = {"s": signal, "step": scalar(step), "w": window, "n": scalar(frame)}
    check("STFT", feed, {"onesided": int(onesided and not complex_input)}, opset=17)


def test_stft_frames_follow_numpy() -> None:
    signal = np.arange(16, dtype=np.float64).reshape(1, 16, 1)
    window = np.hamming(4)
    feed: Feed = {"s": signal, "step": scalar(3), "w": window}
    got = run(build("STFT", feed, {"onesided": 0}, opset=17), feed)
    frames = np.stack([signal[0, i : i + 4, 0] * window for i in range(0, 13, 3)])
    want = np.fft.fft(frames, axis=-1)
    assert got.shape == (1, 5, 4, 2) and got.dtype == np.float64
    np.testing.assert_allclose(got[0, ..., 0] + 1j * got[0, ..., 1], want, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from(["HannWindow", "HammingWindow", "BlackmanWindow"]),
    st.integers(2, 40),
    st.booleans(),
    st.sampled_from([TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16]),
)
def test_windows_match_the_reference(op: str, size: int, periodic: bool, dtype: int) -> None:
    tol = 2e-3 if dtype == TensorProto.FLOAT16 else 1e-6
    got = check(op, {"size": scalar(size, np.int32)}, {"periodic": int(periodic), "output_datatype": dtype}, 17, tol)
    numpy_window = {"HannWindow": np.hanning, "HammingWindow": np.hamming, "BlackmanWindow": np.blackman}[op]
    if op != "HammingWindow":  # NumPy's Hamming uses 0.54 / 0.46, onnx 25/46 / 21/46
        want = numpy_window(size + 1)[:-1] if periodic else numpy_window(size)
        np.testing.assert_allclose(got.astype(np.float64), want, atol=tol * 10)


def test_a_symmetric_window_of_one_sample_is_one() -> None:
    out = run(build("HannWindow", {"size": scalar(1)}, {"periodic": 0}, 17), {"size": scalar(1)})
    assert out.dtype == np.float32 and out.tolist() == [1.0]


@settings(max_examples=20, deadline=None)
@given(
    st.integers(1, 12),
    st.sampled_from([16, 32, 64, 100]),
    st.sampled_from([8000, 16000, 22050]),
    st.floats(0, 500),
    st.sampled_from([TensorProto.FLOAT, TensorProto.DOUBLE]),
)
def test_mel_weight_matrix_matches_the_reference(bins: int, length: int, rate: int, low: float, dtype: int) -> None:
    feed: Feed = {
        "bins": scalar(bins, np.int32),
        "n": scalar(length, np.int32),
        "rate": scalar(rate, np.int32),
        "low": np.array(low, np.float32),
        "high": np.array(rate / 2, np.float32),
    }
    check("MelWeightMatrix", feed, {"output_datatype": dtype}, opset=17, tol=0)
