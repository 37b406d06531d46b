"""2-D depthwise convolution on channels-last images, one ``np.einsum`` per band of output rows.

``Y[h, w, c] = sum_{i, j} Xpad[h * sh + i * dh, w * sw + j * dw, c] * W[i, j, c]``

With ``sw == 1`` the ``w`` and ``c`` axes of a padded row merge: the window of tap ``(i, j)`` for output row
``h`` is one contiguous run of ``Wo * C`` floats starting at ``Xpad[h * sh + i * dh, j * dw]``, and the
weights, tiled ``Wo`` times, are a ``(kh, kw, Wo * C)`` array. So the whole sum is the einsum
``hijx,ijx->hx`` over a strided view: one pass that keeps each output row in L1 while all taps add into it,
with long SIMD inner loops. The obvious alternative, a NumPy multiply and add per tap over the whole tensor,
makes 2 * kh * kw passes through memory and was 1.5-3x slower; the polyphase NCHW kernel it replaces was
2-4x slower. Other strides use the 5-D view ``hwijc,ijc->hwc``, whose inner loop runs over the channels.

NumPy releases the GIL inside einsum, so bands of rows run side by side on the intra-op threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from onnxforge.runtime.threads import parallel, split, workers

# Below this many multiply-adds a depthwise conv runs in one thread (a hand-off costs tens of us).
_PARALLEL_MIN_MACS = 2_000_000
_PADDED = threading.local()


def padded_image(shape: tuple[int, int, int], begins: tuple[int, int], image: np.ndarray) -> np.ndarray:
    """A per-thread scratch ``(Hp, Wp, C)`` array holding ``image`` (H, W, C) at ``begins``, zeros around it.

    Only the border strips are zeroed on each call, not the whole buffer. No caller may keep it past its own
    kernel call.
    """
    hp, wp, c = shape
    size = hp * wp * c
    buf = getattr(_PADDED, "buf", None)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype=np.float32)
        _PADDED.buf = buf
    padded = buf[:size].reshape(shape)
    h, w = image.shape[:2]
    top, left = begins
    padded[:top] = 0
    padded[top + h :] = 0
    padded[top : top + h, :left] = 0
    padded[top : top + h, left + w :] = 0
    padded[top : top + h, left : left + w] = image
    return padded


class DepthwiseTaps:
    """The weights ``(C, 1, kh, kw)`` of a depthwise conv as ``(kh, kw, C)`` taps, tiled per output width."""

    def __init__(self, w: np.ndarray) -> None:
        self.channels, _, self.kh, self.kw = (int(v) for v in w.shape)
        self.taps = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0).astype(np.float32))
        self._tiled: dict[int, np.ndarray] = {}

    def tiled(self, width: int) -> np.ndarray:
        tiled = self._tiled.get(width)
        if tiled is None:
            tiled = np.ascontiguousarray(np.tile(self.taps[:, :, None, :], (1, 1, width, 1)))
            tiled = tiled.reshape(self.kh, self.kw, width * self.channels)
            self._tiled[width] = tiled  # racing threads build equal arrays; either one may win
        return tiled

    def run(
        self,
        padded: np.ndarray,
        out: np.ndarray,
        strides: tuple[int, ...],
        dilations: tuple[int, ...],
        finish: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        """``out`` (Ho, Wo, C) = the depthwise conv of one padded image ``padded`` (Hp, Wp, C), float32.

        ``finish`` (bias, activation) is applied in place to each band of rows while it is still in cache.
        """
        macs = out.size * self.kh * self.kw
        parts = workers() if macs >= _PARALLEL_MIN_MACS else 1
        cuts = split(out.shape[0], parts)
        parallel([lambda r0=r0, r1=r1: self._rows(padded, out, r0, r1, strides, dilations, finish) for r0, r1 in cuts])

    def _rows(
        self,
        padded: np.ndarray,
        out: np.ndarray,
        r0: int,
        r1: int,
        strides: tuple[int, ...],
        dilations: tuple[int, ...],
        finish: Callable[[np.ndarray], None] | None,
    ) -> None:
        (sh, sw), (dh, dw) = strides, dilations
        s0, s1, s2 = padded.strides
        _, wo, c = out.shape
        start = padded[r0 * sh :]
        if sw == 1:
            view = as_strided(start, (r1 - r0, self.kh, self.kw, wo * c), (s0 * sh, s0 * dh, s1 * dw, s2))
            np.einsum("hijx,ijx->hx", view, self.tiled(wo), out=out[r0:r1].reshape(r1 - r0, wo * c))
        else:
            view = as_strided(start, (r1 - r0, wo, self.kh, self.kw, c), (s0 * sh, s1 * sw, s0 * dh, s1 * dw, s2))
            np.einsum("hwijc,ijc->hwc", view, self.taps, out=out[r0:r1])
        if finish is not None:
            finish(out[r0:r1])
