"""Image ops: ImageDecoder (20), CenterCropPad (18), Col2Im (18) and DeformConv (19).

- ImageDecoder decodes an encoded image (JPEG, PNG, BMP, TIFF, WebP, JPEG 2000, PNM, ...) with Pillow,
  an optional dependency imported on first use, to uint8 ``(H, W, 3)`` RGB/BGR or ``(H, W, 1)`` grayscale.
- CenterCropPad: per listed axis with target ``s`` and size ``n``, crop ``n - s`` (the extra odd element
  from the end) or zero-pad ``s - n`` (likewise, the extra element at the end), keeping the centre.
- Col2Im is the adjoint of im2col: input ``(N, C * prod(block), L)`` with ``L = prod(blocks)``,
  ``blocks_i = (image_i + pad_begin_i + pad_end_i - d_i * (k_i - 1) - 1) // s_i + 1``; column ``l`` of block
  position ``j`` is added at ``image[blocks(l) * s - pad_begin + j * d]`` (positions in the pads dropped).
- DeformConv: ``Y[n, m, o] = B[m] + sum_{c in group(m), j} W[m, c, j] * mask[n, g(c), j, o] *
  X~[n, c, p]`` with ``p = o * s - pad_begin + j * d + offset[n, g(c), j, :, o]``, where ``g(c)`` is the
  offset group of channel ``c`` and ``X~`` interpolates bilinearly, reading 0 outside the image. It is
  gather (columns ``(N, C * K, P)``) then a grouped matmul, as Conv's im2col.
"""

from __future__ import annotations

import io
import itertools

import numpy as np

from onnxforge._errors import Fail, InvalidArgument, NotImplemented
from onnxforge.runtime.kernels._args import axis_list, checked_shape, int_list
from onnxforge.runtime.kernels._spatial import compute_dtype, conv_geometry, kernel_from, prod, spatial_params
from onnxforge.runtime.kernels.image_sampling import axis_taps, gather_sum
from onnxforge.runtime.registry import kernel

_PIXEL_FORMATS = {"RGB": "RGB", "BGR": "RGB", "Grayscale": "L"}


@kernel("ImageDecoder", since=20)
def ImageDecoder(encoded_stream: np.ndarray, *, pixel_format: str = "RGB") -> np.ndarray:
    if pixel_format not in _PIXEL_FORMATS:
        raise InvalidArgument(f"ImageDecoder pixel_format must be RGB, BGR or Grayscale, got '{pixel_format}'")
    try:
        from PIL import Image
    except ImportError as error:
        raise NotImplemented(
            "ImageDecoder needs the optional dependency Pillow: pip install onnxforge[image]"
        ) from error
    try:
        with Image.open(io.BytesIO(np.ascontiguousarray(encoded_stream).tobytes())) as image:
            pixels = np.asarray(image.convert(_PIXEL_FORMATS[pixel_format]), dtype=np.uint8)
    except Exception as error:  # Pillow raises many types for a corrupt or unsupported stream
        raise Fail(f"ImageDecoder could not decode the {encoded_stream.size}-byte stream: {error}") from error
    if pixel_format == "Grayscale":
        return np.ascontiguousarray(pixels[:, :, None])
    if pixel_format == "BGR":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    return np.ascontiguousarray(pixels)


@kernel("CenterCropPad", since=18)
def CenterCropPad(input_data: np.ndarray, shape: np.ndarray, *, axes: list[int] | None = None) -> np.ndarray:
    targets = int_list(shape, "CenterCropPad shape")
    chosen = axis_list(axes, input_data.ndim) if axes else list(range(input_data.ndim))
    if len(targets) != len(chosen):
        raise InvalidArgument(f"CenterCropPad shape {targets} must have one entry per axis {chosen}")
    out_shape = list(input_data.shape)
    source = [slice(None)] * input_data.ndim
    target = [slice(None)] * input_data.ndim
    for axis, size in zip(chosen, targets):
        length = input_data.shape[axis]
        if size < 0:
            raise InvalidArgument(f"CenterCropPad shape {targets} has a negative size")
        out_shape[axis] = size
        if size < length:
            begin = (length - size) // 2
            source[axis] = slice(begin, begin + size)
        elif size > length:
            begin = (size - length) // 2
            target[axis] = slice(begin, begin + length)
    result = np.zeros(checked_shape(out_shape, "CenterCropPad"), dtype=input_data.dtype)
    if input_data.dtype == object:
        result[...] = ""
    result[tuple(target)] = input_data[tuple(source)]
    return result


@kernel("Col2Im", since=18)
def Col2Im(
    input: np.ndarray,  # noqa: A002 - the spec's name
    image_shape: np.ndarray,
    block_shape: np.ndarray,
    *,
    dilations: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    image = int_list(image_shape, "Col2Im image_shape")
    block = int_list(block_shape, "Col2Im block_shape")
    rank = len(image)
    if len(block) != rank or rank == 0:
        raise InvalidArgument(f"Col2Im image_shape {image} and block_shape {block} must have the same length")
    k, s, d = spatial_params(rank, block, strides, dilations)
    begins, ends, blocks = conv_geometry("NOTSET", image, k, s, d, pads)
    ksize = prod(k)
    if input.ndim != 3 or input.shape[1] % max(ksize, 1) or input.shape[2] != prod(blocks):
        raise InvalidArgument(
            f"Col2Im input must be (N, C * {ksize}, {prod(blocks)}) for blocks {list(blocks)}, "
            f"got shape {list(input.shape)}"
        )
    n, c = input.shape[0], input.shape[1] // ksize
    padded = [size + b + e for size, b, e in zip(image, begins, ends)]
    out = np.zeros(checked_shape((n, c, *padded), "Col2Im"), dtype=input.dtype)
    if input.dtype == object:
        out[...] = ""
    columns = input.reshape(n, c, ksize, *blocks)
    for j, offset in enumerate(itertools.product(*(range(ki) for ki in k))):
        window = tuple(slice(o * di, o * di + (b - 1) * si + 1, si) for o, di, b, si in zip(offset, d, blocks, s))
        out[(slice(None), slice(None), *window)] += columns[:, :, j]
    crop = tuple(slice(b, b + size) for b, size in zip(begins, image))
    return np.ascontiguousarray(out[(slice(None), slice(None), *crop)])


@kernel("DeformConv", since=19)
def DeformConv(
    X: np.ndarray,
    W: np.ndarray,
    offset: np.ndarray,
    B: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    *,
    dilations: list[int] | None = None,
    group: int = 1,
    kernel_shape: list[int] | None = None,
    offset_group: int = 1,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    rank = X.ndim - 2
    if rank < 1 or W.ndim != X.ndim:
        raise InvalidArgument(f"DeformConv X {list(X.shape)} and W {list(W.shape)} must have the same rank >= 3")
    k, s, d = spatial_params(rank, kernel_from(kernel_shape, W.shape), strides, dilations)
    n, c, sizes = X.shape[0], X.shape[1], X.shape[2:]
    m, ksize = W.shape[0], prod(k)
    if group < 1 or c != W.shape[1] * group or m % group:
        raise InvalidArgument(f"DeformConv X has {c} channels, W {list(W.shape)} and group={group} do not match")
    if offset_group < 1 or c % offset_group:
        raise InvalidArgument(f"DeformConv: {c} input channels are not divisible by offset_group={offset_group}")
    begins, _, out = conv_geometry("NOTSET", sizes, k, s, d, pads)
    if offset.shape != (n, offset_group * ksize * rank, *out):
        raise InvalidArgument(
            f"DeformConv offset must have shape {[n, offset_group * ksize * rank, *out]}, got {list(offset.shape)}"
        )
    if mask is not None and mask.shape != (n, offset_group * ksize, *out):
        raise InvalidArgument(
            f"DeformConv mask must have shape {[n, offset_group * ksize, *out]}, got {list(mask.shape)}"
        )
    dtype = compute_dtype(X.dtype)
    ones = (1,) * rank
    # Sampling positions (N, G, K, *out) per spatial axis.
    shifts = offset.astype(dtype, copy=False).reshape(n, offset_group, ksize, rank, *out)
    kernel_offsets = np.array(list(itertools.product(*(range(ki) for ki in k))), dtype=dtype).reshape(ksize, rank)
    taps = []
    for axis in range(rank):
        base = np.arange(out[axis], dtype=dtype) * s[axis] - begins[axis]
        base = base.reshape([out[axis] if i == axis else 1 for i in range(rank)])
        reach = (kernel_offsets[:, axis] * d[axis]).reshape(ksize, *ones)
        position = base + reach + shifts[:, :, :, axis]
        taps.append(axis_taps(position, sizes[axis], "linear", "zeros", (0.0, sizes[axis] - 1.0)))
    table = np.moveaxis(X.astype(dtype, copy=False).reshape(n, offset_group, c // offset_group, -1), 2, 3)
    lead = (np.arange(n).reshape(n, 1, 1, *ones), np.arange(offset_group).reshape(1, offset_group, 1, *ones))
    cols = gather_sum(table, lead, taps, sizes)  # (N, G, K, *out, C/G)
    if mask is not None:
        cols = cols * mask.astype(dtype, copy=False).reshape(n, offset_group, ksize, *out, 1)
    p = prod(out)
    cols = np.moveaxis(cols.reshape(n, offset_group, ksize, p, -1), 4, 2)  # (N, G, C/G, K, P)
    cols = cols.reshape(n, group, (c // group) * ksize, p)
    weights = W.astype(dtype, copy=False).reshape(group, m // group, (c // group) * ksize)
    y = np.matmul(weights, cols).reshape(n, m, *out)
    if B is not None:
        if B.shape != (m,):
            raise InvalidArgument(f"DeformConv B must have shape [{m}], got {list(B.shape)}")
        y = y + B.astype(dtype, copy=False).reshape(m, *ones)
    return y.astype(X.dtype, copy=False)
