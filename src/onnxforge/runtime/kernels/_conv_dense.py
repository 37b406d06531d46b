"""A conv on small images as one dense matrix product per batch.

The conv of one image is a linear map from its ``D = C * prod(spatial)`` inputs to its ``E = M * prod(out)``
outputs. Written as a dense ``(D, E)`` matrix ``T``, a whole batch is ``Y (N x E) = X (N x D) @ T`` (+ bias):
one GEMM with no window copy, whose rows come out in NCHW order. ``T`` is built once per input shape by running
the conv itself on the ``D`` images of the identity basis, so it is exact for every pad, stride, dilation and
group (each entry is one weight times 1.0, plus zeros); only the order of the sums changes (float rounding).

``T`` holds zeros where a window does not reach, ``D * E / (M * C/G * prod(kernel) * prod(out))`` times the
useful multiply-adds, so it pays only on small images: the bundled digits model's 16 -> 32 channel 3x3 conv on
4x4 images (T 256 x 512, 1.8x the useful work) at batch 360 took 934 us against 2254 through im2col, and one
image 8 us against 27. With a weight that sparse (1 -> 16 channels at 8x8: 7x) it still wins for a few images,
where im2col's fixed costs dominate, and loses on big batches (648 vs 583 us at 360).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnxforge.runtime import threads

# T at most this many entries (1 MB of float32): bigger images keep the window paths.
MAX_ENTRIES = 1 << 18
# Above this much wasted work (T's size over the useful multiply-adds) only batches of at most SMALL_BATCH pay.
MAX_OVERHEAD = 4.0
SMALL_BATCH = 4


class DenseConv:
    """``T`` and the bias tiled per output pixel, for images of one shape (any batch)."""

    def __init__(
        self, matrix: np.ndarray, bias_row: np.ndarray | None, out_shape: tuple[int, ...], overhead: float
    ) -> None:
        self.matrix, self.bias_row, self.out_shape, self.overhead = matrix, bias_row, out_shape, overhead

    def pays(self, batch: int) -> bool:
        return self.overhead <= MAX_OVERHEAD or batch <= SMALL_BATCH

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        y = threads.matmul(x.reshape(n, self.matrix.shape[0]), self.matrix)
        if self.bias_row is not None:
            y += self.bias_row
        return y.reshape(n, *self.out_shape)


def dense_conv(
    image_shape: tuple[int, ...],
    m: int,
    useful_per_image: int,
    out: tuple[int, ...],
    dtype: np.dtype,
    bias: np.ndarray | None,
    conv_of: Callable[[np.ndarray], np.ndarray],
) -> DenseConv | None:
    """The dense form of a conv on images of ``image_shape`` (C, *spatial) giving ``m`` channels of ``out``, or
    None when ``T`` would be too big. ``conv_of`` runs the conv, without its bias, on a batch of images."""
    inputs = int(np.prod(image_shape))
    outputs = m * int(np.prod(out))
    if dtype not in (np.float32, np.float64) or inputs * outputs > MAX_ENTRIES or useful_per_image <= 0:
        return None
    basis = np.eye(inputs, dtype=dtype).reshape(inputs, *image_shape)
    matrix = np.ascontiguousarray(conv_of(basis).reshape(inputs, outputs))
    bias_row = None if bias is None else np.repeat(bias.astype(dtype), outputs // m)
    return DenseConv(matrix, bias_row, (m, *out), inputs * outputs / useful_per_image)
