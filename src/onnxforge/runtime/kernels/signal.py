"""Signal kernels: DFT, STFT, HannWindow, HammingWindow, BlackmanWindow and MelWeightMatrix.

Complex values travel as a trailing dimension of size 2 (real, imaginary); real signals may use size 1.

- DFT along ``axis`` (an attribute until opset 20, an optional input after) of length ``n = dft_length``
  (zero-padded or truncated): ``y[k] = sum_m x[m] exp(-2 pi i k m / n)``; ``inverse`` uses ``+i`` and divides
  by ``n``. ``onesided`` keeps ``k <= n // 2`` on the way forward (RFFT); inverse + onesided reads the first
  ``n // 2 + 1`` bins of a Hermitian spectrum and returns the real signal with a last dimension of 1 (IRFFT,
  default ``n = 2 (bins - 1)``).
- STFT cuts ``frames = (L - frame_length) // frame_step + 1`` frames of length ``frame_length`` from a
  ``[batch, L, 1|2]`` signal, multiplies each by ``window`` (ones by default) and DFTs it: output
  ``[batch, frames, bins, 2]`` with ``bins = frame_length // 2 + 1`` when ``onesided`` (the default).
- Windows of length ``size`` with ``N = size`` (periodic) or ``size - 1`` (symmetric), ``x = 2 pi n / N``:
  Hann ``0.5 - 0.5 cos x``, Hamming ``25/46 - 21/46 cos x``, Blackman ``0.42 - 0.5 cos x + 0.08 cos 2x``.
  A symmetric window of size 1 is ``[1]``.
- MelWeightMatrix ``[dft_length // 2 + 1, num_mel_bins]``: ``num_mel_bins + 2`` points equally spaced on the
  mel scale ``mel(f) = 2595 log10(1 + f / 700)`` between the edges (step ``(high - low) / (bins + 2)``, as
  onnx and onnxruntime do), mapped to spectrogram bins ``floor((dft_length + 1) f / sample_rate)``; column
  ``i`` is the triangle rising from bin ``b[i]`` to 1 at ``b[i + 1]`` and falling to 0 at ``b[i + 2]``.

Transforms run in complex64 (complex128 for float64 input), as NumPy's FFT does for float32 data; windows
and mel weights in float64; results are cast to the input (or requested) dtype.
"""

from __future__ import annotations

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.ir.dtypes import np_dtype_for
from onnxforge.runtime.kernels._args import checked_shape, scalar_int, scalar_value
from onnxforge.runtime.registry import kernel


def _as_complex(x: np.ndarray, what: str) -> np.ndarray:
    """``[..., 1|2]`` real / complex pairs as a complex array (complex64 unless float64) without the last dim."""
    if x.ndim < 2 or x.shape[-1] not in (1, 2):
        raise InvalidArgument(f"{what}: the last dimension must be 1 (real) or 2 (complex), got shape {list(x.shape)}")
    real = np.float64 if x.dtype == np.float64 else np.float32
    values = x.astype(real)
    if x.shape[-1] == 1:
        return values[..., 0].astype(np.result_type(real, np.complex64))
    return values[..., 0] + 1j * values[..., 1]


def _pairs(z: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.stack((z.real, z.imag), axis=-1).astype(dtype)


def _dft(x: np.ndarray, length: np.ndarray | None, axis: int, inverse: int, onesided: int) -> np.ndarray:
    rank = x.ndim
    if not (-rank <= axis <= -2 or 0 <= axis <= rank - 2):
        raise InvalidArgument(
            f"DFT: axis {axis} is out of range for an input of rank {rank} (valid: [{-rank}, -2] or [0, {rank - 2}])"
        )
    axis = axis + rank if axis < 0 else axis
    signal = _as_complex(x, "DFT")
    dim = signal.shape[axis]
    if length is not None:
        n = scalar_int(length, "DFT's dft_length")
    else:
        n = 2 * (dim - 1) if inverse and onesided else dim
    if n < 1:
        raise InvalidArgument(f"DFT: dft_length must be positive, got {n}")
    if inverse and onesided:
        return np.fft.irfft(signal, n=n, axis=axis)[..., np.newaxis].astype(x.dtype)
    result = np.fft.ifft(signal, n=n, axis=axis) if inverse else np.fft.fft(signal, n=n, axis=axis)
    if onesided:
        result = np.take(result, np.arange(n // 2 + 1), axis=axis)
    return _pairs(result, x.dtype)


@kernel("DFT", since=17)
def DFT_17(
    input: np.ndarray, dft_length: np.ndarray | None = None, *, axis: int = 1, inverse: int = 0, onesided: int = 0
) -> np.ndarray:
    return _dft(input, dft_length, axis, inverse, onesided)


@kernel("DFT", since=20)
def DFT_20(
    input: np.ndarray,
    dft_length: np.ndarray | None = None,
    axis: np.ndarray | None = None,
    *,
    inverse: int = 0,
    onesided: int = 0,
) -> np.ndarray:
    return _dft(input, dft_length, -2 if axis is None else scalar_int(axis, "DFT's axis"), inverse, onesided)


@kernel("STFT", since=17)
def STFT(
    signal: np.ndarray,
    frame_step: np.ndarray,
    window: np.ndarray | None = None,
    frame_length: np.ndarray | None = None,
    *,
    onesided: int = 1,
) -> np.ndarray:
    if signal.ndim != 3:
        raise InvalidArgument(f"STFT: the signal must be [batch, length, 1|2], got shape {list(signal.shape)}")
    samples = _as_complex(signal, "STFT")
    length = samples.shape[1]
    step = scalar_int(frame_step, "STFT's frame_step")
    if window is not None and window.ndim != 1:
        raise InvalidArgument(f"STFT: window must be 1-D, got shape {list(window.shape)}")
    if frame_length is not None:
        size = scalar_int(frame_length, "STFT's frame_length")
        if window is not None and window.shape[0] != size:
            raise InvalidArgument(f"STFT: window has {window.shape[0]} values but frame_length is {size}")
    else:
        size = window.shape[0] if window is not None else length
    if step < 1 or not 1 <= size <= length:
        raise InvalidArgument(f"STFT: need frame_step >= 1 and 1 <= frame_length <= {length}, got {step} and {size}")
    frames = np.lib.stride_tricks.sliding_window_view(samples, size, axis=1)[:, ::step]
    if window is not None:
        frames = frames * window.astype(frames.real.dtype)
    spectrum = np.fft.fft(frames, axis=-1)
    if onesided:
        spectrum = spectrum[..., : size // 2 + 1]
    return _pairs(spectrum, signal.dtype)


def _window(size: np.ndarray, periodic: int, output_datatype: int, terms: tuple[float, ...]) -> np.ndarray:
    """``sum_k terms[k] cos(k x)`` with ``x = 2 pi n / N``, in the requested dtype."""
    count = scalar_int(size, "the window size")
    checked_shape([count], "window")
    dtype = np_dtype_for(output_datatype)
    period = count if periodic else count - 1
    if period <= 0:
        return np.ones(count, dtype=dtype)
    x = 2.0 * np.pi * np.arange(count, dtype=np.float64) / period
    values = sum(coefficient * np.cos(k * x) for k, coefficient in enumerate(terms))
    return np.asarray(values, dtype=np.float64).astype(dtype)


@kernel("HannWindow", since=17)
def HannWindow(size: np.ndarray, *, output_datatype: int = 1, periodic: int = 1) -> np.ndarray:
    return _window(size, periodic, output_datatype, (0.5, -0.5))


@kernel("HammingWindow", since=17)
def HammingWindow(size: np.ndarray, *, output_datatype: int = 1, periodic: int = 1) -> np.ndarray:
    return _window(size, periodic, output_datatype, (25.0 / 46.0, -21.0 / 46.0))


@kernel("BlackmanWindow", since=17)
def BlackmanWindow(size: np.ndarray, *, output_datatype: int = 1, periodic: int = 1) -> np.ndarray:
    return _window(size, periodic, output_datatype, (0.42, -0.5, 0.08))


@kernel("MelWeightMatrix", since=17)
def MelWeightMatrix(
    num_mel_bins: np.ndarray,
    dft_length: np.ndarray,
    sample_rate: np.ndarray,
    lower_edge_hertz: np.ndarray,
    upper_edge_hertz: np.ndarray,
    *,
    output_datatype: int = 1,
) -> np.ndarray:
    mels = scalar_int(num_mel_bins, "MelWeightMatrix's num_mel_bins")
    n_fft = scalar_int(dft_length, "MelWeightMatrix's dft_length")
    rate = scalar_int(sample_rate, "MelWeightMatrix's sample_rate")
    if mels < 1 or n_fft < 1 or rate < 1:
        raise InvalidArgument(
            f"MelWeightMatrix: num_mel_bins ({mels}), dft_length ({n_fft}) and sample_rate ({rate}) must be positive"
        )
    bins = n_fft // 2 + 1
    checked_shape([bins, mels], "MelWeightMatrix")
    # The edges' mel values are taken in the edges' own precision, as onnx's reference and onnxruntime do.
    low, high = (scalar_value(e, "a MelWeightMatrix edge") for e in (lower_edge_hertz, upper_edge_hertz))
    low_mel, high_mel = (float(2595 * np.log1p(e / 700)) / np.log(10) for e in (low, high))
    step = (high_mel - low_mel) / (mels + 2)
    hertz = 700 * np.expm1((np.arange(mels + 2) * step + low_mel) / 2595 * np.log(10))
    points = (((n_fft + 1) * hertz) // rate).astype(np.int64)
    out = np.zeros((bins, mels), dtype=np.float64)
    rows = np.arange(bins)
    for i in range(mels):
        left, center, right = (int(p) for p in points[i : i + 3])
        if center == left:
            if 0 <= center < bins:
                out[center, i] = 1.0
        else:
            rising = (rows >= left) & (rows <= center)
            out[rising, i] = (rows[rising] - left) / (center - left)
        if right > center:
            falling = (rows >= center) & (rows < right)
            out[falling, i] = (right - rows[falling]) / (right - center)
    return out.astype(np_dtype_for(output_datatype))
