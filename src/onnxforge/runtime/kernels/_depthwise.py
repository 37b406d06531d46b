"""2-D depthwise convolution on channels-last images, one ``np.einsum`` per band of output rows.

``Y[h, w, c] = sum_{i, j} Xpad[h * sh + i * dh, w * sw + j * dw, c] * W[i, j, c]``

With ``sw == 1`` the ``w`` and ``c`` axes of a padded row merge: the window of tap ``(i, j)`` for output row
``h`` is one contiguous run of ``Wo * C`` floats starting at ``Xpad[h * sh + i * dh, j * dw]``, and the
weights, tiled ``Wo`` times, are a ``(kh, kw, Wo * C)`` array. So the whole sum is the einsum
``hijx,ijx->hx`` over a strided view: one pass that keeps each output row in L1 while all taps add into it,
with long SIMD inner loops. The obvious alternative, a NumPy multiply and add per tap over the whole tensor,
makes 2 * kh * kw passes through memory and was 1.5-3x slower; the polyphase NCHW kernel it replaces was
2-4x slower. With a column stride ``sw > 1`` the padded image is stored as ``sw`` column phases (every
sw-th column from each start); the kernel columns that read one phase again form such runs, so it is one
einsum per phase (2 for a 3x3 stride-2 conv), added up. A 5-D view ``hwijc,ijc->hwc`` instead, whose inner
loop runs only over the channels, was 2-3x slower.

NumPy releases the GIL inside einsum, so bands of rows run side by side on the intra-op threads.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np

from onnxforge.runtime.kernels._spatial import strided_view
from onnxforge.runtime.threads import parallel, split, workers

# Below this many multiply-adds a depthwise conv runs in one thread: smaller parts ran no faster side by
# side than one after the other (see _im2col.PARALLEL_MIN_MACS).
_PARALLEL_MIN_MACS = 3_000_000
_PADDED = threading.local()


def padded_image(
    shape: tuple[int, int, int], begins: tuple[int, int], image: np.ndarray, phases: int = 1
) -> np.ndarray:
    """A per-thread scratch copy of ``image`` (H, W, C) zero-padded to ``shape`` (Hp, Wp, C), with ``image`` at
    ``begins``, its columns split into ``phases`` polyphase components: ``P[h, p, q] = padded[h, q * phases + p]``.

    Only the border strips are zeroed on each call, not the whole buffer. No caller may keep it past its own
    kernel call.
    """
    hp, wp, c = shape
    wq = -(-wp // phases)
    size = hp * phases * wq * c
    buf = getattr(_PADDED, "buf", None)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype=np.float32)
        _PADDED.buf = buf
    padded = buf[:size].reshape(hp, phases, wq, c)
    h, w = image.shape[:2]
    top, left = begins
    padded[:top] = 0
    padded[top + h :] = 0
    for phase in range(phases):
        # Padded columns q * phases + phase that hold image columns [0, w).
        q0 = min(wq, max(0, -(-(left - phase) // phases)))
        q1 = min(wq, max(q0, -(-(left + w - phase) // phases)))
        padded[top : top + h, phase, :q0] = 0
        padded[top : top + h, phase, q1:] = 0
        if q1 > q0:
            first = q0 * phases + phase - left
            padded[top : top + h, phase, q0:q1] = image[:, first : first + (q1 - q0 - 1) * phases + 1 : phases]
    return padded


class DepthwiseTaps:
    """The weights ``(C, 1, kh, kw)`` of a depthwise conv as ``(kh, kw, C)`` taps, tiled per output width."""

    def __init__(self, w: np.ndarray) -> None:
        self.channels, _, self.kh, self.kw = (int(v) for v in w.shape)
        self.taps = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0), dtype=np.float32)  # one copy, not two
        self._reads: dict[tuple[int, int, int], list[tuple[int, int, int, int, np.ndarray]]] = {}

    def reads(self, stride: int, dilation: int, width: int) -> list[tuple[int, int, int, int, np.ndarray]]:
        """Per column phase that some kernel columns read: (phase, first column, number of kernel columns,
        their column step, their weights tiled ``width`` times as ``(kh, count, width * C)``).

        The kernel columns ``j`` with ``j * dilation % stride == phase`` are ``j0 + u * stride / g``
        (``g = gcd(stride, dilation)``) and read phase columns ``j0 * dilation // stride + u * dilation / g``.
        """
        key = (stride, dilation, width)
        reads = self._reads.get(key)
        if reads is None:
            step = stride // math.gcd(stride, dilation)
            reads = []
            for j0 in range(min(self.kw, step)):
                picked = self.taps[:, j0::step]
                tiled = np.ascontiguousarray(np.tile(picked[:, :, None, :], (1, 1, width, 1)))
                count = picked.shape[1]
                reads.append(
                    (
                        j0 * dilation % stride,
                        j0 * dilation // stride,
                        count,
                        dilation * step // stride,
                        tiled.reshape(self.kh, count, width * self.channels),
                    )
                )
            self._reads[key] = reads  # racing threads build equal lists; either one may win
        return reads

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
        s0, s1, s2, s3 = padded.strides
        _, wo, c = out.shape
        target = out[r0:r1].reshape(r1 - r0, wo * c)
        reads = self.reads(sw, dw, wo)
        tmp = np.empty_like(target) if len(reads) > 1 else target
        for index, (phase, first, count, step, tiled) in enumerate(reads):
            # Kernel column u of this phase starts u * step columns on: one contiguous run of wo * c floats.
            offset = r0 * sh * s0 + phase * s1 + first * s2
            view = strided_view(padded, (r1 - r0, self.kh, count, wo * c), (s0 * sh, s0 * dh, s2 * step, s3), offset)
            np.einsum("hijx,ijx->hx", view, tiled, out=target if index == 0 else tmp)
            if index:
                target += tmp
        if finish is not None:
            finish(out[r0:r1])
