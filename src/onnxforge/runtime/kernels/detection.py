"""Detection ops: RoiAlign (10, 16) and NonMaxSuppression (10).

RoiAlign. ROI ``r = (x1, y1, x2, y2)`` of image ``batch_indices[r]`` is scaled by ``spatial_scale`` and,
with ``half_pixel`` coordinates (RoiAlign-16's default), shifted by ``-0.5``; with ``output_half_pixel``
(RoiAlign-10's only behaviour) a degenerate ROI is widened to at least 1x1. It is split into
``output_height x output_width`` bins, each sampled on a ``gh x gw`` grid (``sampling_ratio``, or
``ceil(roi_size / bins)`` when it is 0) at ``start + bin * size + (i + 0.5) * size / g``. A sample with
``y < -1``, ``y > H``, ``x < -1`` or ``x > W`` reads 0; otherwise ``y`` is clamped to ``[0, H - 1]`` and read
bilinearly from ``y_low = floor(y)``, ``y_high = y_low + 1`` with weights ``1 - ly, ly`` (likewise x).

- ``avg``: the mean of the samples. Bilinear weights are separable, so the bin means are
  ``Ay @ X[b, c] @ Ax^T / (gh * gw)`` with ``Ay[ph, h]`` the summed y-weights of the bin's samples on row h.
- ``max``: per sample the largest of the four *weighted* corners ``w_ab * X[y_a, x_b]`` (as onnxruntime
  does), then the largest over the bin's samples.

NonMaxSuppression. Per (batch, class), boxes scoring above ``score_threshold`` (when given) are taken in
order of decreasing score (ties: lower index first); a box is kept unless its IoU with an already kept box
exceeds ``iou_threshold``, until ``max_output_boxes_per_class`` are kept. Boxes are ``[y1, x1, y2, x2]``
(either corner order) or, with ``center_point_box``, ``[x_center, y_center, width, height]``. IoU is
``inter / (area1 + area2 - inter)``; pairs with no overlap or a non-positive area never suppress. The output
is the int64 ``[num_selected, 3]`` list of ``(batch, class, box)``.
"""

from __future__ import annotations

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels._args import scalar_int, scalar_value
from onnxforge.runtime.registry import kernel


def _axis_samples(
    start: np.floating, size: np.floating, bins: int, grid: int, length: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(low index, high index, low weight, high weight) of the samples of one axis, each (bins, grid)."""
    pos = (
        start
        + np.arange(bins, dtype=dtype)[:, None] * size
        + (np.arange(grid, dtype=dtype)[None, :] + dtype.type(0.5)) * size / dtype.type(grid)
    )
    valid = (pos >= -1.0) & (pos <= length)
    pos = np.maximum(pos, 0)
    low = np.trunc(pos).astype(np.int64)
    edge = low >= length - 1
    low = np.where(edge, length - 1, low)
    high = np.where(edge, low, low + 1)
    pos = np.where(edge, low.astype(dtype), pos)
    frac = (pos - low).astype(dtype)
    zero = dtype.type(0)
    return low, high, np.where(valid, 1 - frac, zero), np.where(valid, frac, zero)


def _roi_align(
    X: np.ndarray,
    rois: np.ndarray,
    batch_indices: np.ndarray,
    half_pixel: bool,
    mode: str,
    output_height: int,
    output_width: int,
    sampling_ratio: int,
    spatial_scale: float,
) -> np.ndarray:
    mode = mode.lower()
    if mode not in ("avg", "max"):
        raise InvalidArgument(f"RoiAlign mode must be avg or max, got '{mode}'")
    if X.ndim != 4:
        raise InvalidArgument(f"RoiAlign X must be (N, C, H, W), got shape {list(X.shape)}")
    if rois.ndim != 2 or rois.shape[1] != 4:
        raise InvalidArgument(f"RoiAlign rois must be (num_rois, 4), got shape {list(rois.shape)}")
    indices = np.asarray(batch_indices).reshape(-1)
    if indices.shape[0] != rois.shape[0]:
        raise InvalidArgument(f"RoiAlign has {rois.shape[0]} rois but {indices.shape[0]} batch_indices")
    if indices.size and (indices.min() < 0 or indices.max() >= X.shape[0]):
        raise InvalidArgument(f"RoiAlign batch_indices must be in [0, {X.shape[0] - 1}], got {indices.tolist()}")
    if output_height < 1 or output_width < 1:
        raise InvalidArgument(f"RoiAlign output size must be positive, got {output_height}x{output_width}")
    dtype = np.dtype(np.float64) if X.dtype == np.float64 else np.dtype(np.float32)
    c, height, width = X.shape[1:]
    y = np.zeros((rois.shape[0], c, output_height, output_width), dtype=dtype)
    xs = X.astype(dtype, copy=False)
    boxes = rois.astype(dtype, copy=False) * dtype.type(spatial_scale) - dtype.type(0.5 if half_pixel else 0.0)
    for r, (x1, y1, x2, y2) in enumerate(boxes):
        roi_w, roi_h = x2 - x1, y2 - y1
        if not half_pixel:
            roi_w, roi_h = max(roi_w, dtype.type(1)), max(roi_h, dtype.type(1))
        bin_h, bin_w = roi_h / dtype.type(output_height), roi_w / dtype.type(output_width)
        gh = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_h / output_height))
        gw = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_w / output_width))
        if gh <= 0 or gw <= 0:
            continue
        ylo, yhi, wylo, wyhi = _axis_samples(y1, bin_h, output_height, gh, height, dtype)
        xlo, xhi, wxlo, wxhi = _axis_samples(x1, bin_w, output_width, gw, width, dtype)
        image = xs[int(indices[r])]
        if mode == "avg":
            top, ay = _bin_matrix(ylo, yhi, wylo, wyhi, dtype)
            left, ax = _bin_matrix(xlo, xhi, wxlo, wxhi, dtype)
            window = image[:, top : top + ay.shape[1], left : left + ax.shape[1]]
            y[r] = np.matmul(np.matmul(ay, window), ax.T) / dtype.type(gh * gw)
        else:
            best: np.ndarray | None = None
            for yi, wy in ((ylo, wylo), (yhi, wyhi)):
                for xi, wx in ((xlo, wxlo), (xhi, wxhi)):
                    # (C, PH, gh, PW, gw) weighted corner values.
                    corner = image[:, yi[:, :, None, None], xi[None, None, :, :]]
                    corner = corner * (wy[:, :, None, None] * wx[None, None, :, :])
                    best = corner if best is None else np.maximum(best, corner)
            assert best is not None
            y[r] = best.max(axis=(2, 4))
    return y.astype(X.dtype, copy=False)


def _bin_matrix(
    low: np.ndarray, high: np.ndarray, w_low: np.ndarray, w_high: np.ndarray, dtype: np.dtype
) -> tuple[int, np.ndarray]:
    """``(first, A)``: ``A[bin, i]`` sums the weights the bin's samples put on pixel ``first + i``.

    Only the pixels the samples reach are covered, so small ROIs of large images stay cheap.
    """
    bins = low.shape[0]
    first = int(low.min())
    span = int(high.max()) - first + 1
    rows = np.repeat(np.arange(bins) * span - first, low.shape[1])
    flat = np.concatenate([rows + low.reshape(-1), rows + high.reshape(-1)])
    weights = np.concatenate([w_low.reshape(-1), w_high.reshape(-1)]).astype(np.float64)
    return first, np.bincount(flat, weights, minlength=bins * span).reshape(bins, span).astype(dtype)


@kernel("RoiAlign", since=10)
def RoiAlign_10(
    X: np.ndarray,
    rois: np.ndarray,
    batch_indices: np.ndarray,
    *,
    mode: str = "avg",
    output_height: int = 1,
    output_width: int = 1,
    sampling_ratio: int = 0,
    spatial_scale: float = 1.0,
) -> np.ndarray:
    return _roi_align(X, rois, batch_indices, False, mode, output_height, output_width, sampling_ratio, spatial_scale)


@kernel("RoiAlign", since=16)
def RoiAlign(
    X: np.ndarray,
    rois: np.ndarray,
    batch_indices: np.ndarray,
    *,
    coordinate_transformation_mode: str = "half_pixel",
    mode: str = "avg",
    output_height: int = 1,
    output_width: int = 1,
    sampling_ratio: int = 0,
    spatial_scale: float = 1.0,
) -> np.ndarray:
    if coordinate_transformation_mode not in ("half_pixel", "output_half_pixel"):
        raise InvalidArgument(
            "RoiAlign coordinate_transformation_mode must be half_pixel or output_half_pixel, "
            f"got '{coordinate_transformation_mode}'"
        )
    half_pixel = coordinate_transformation_mode == "half_pixel"
    return _roi_align(
        X, rois, batch_indices, half_pixel, mode, output_height, output_width, sampling_ratio, spatial_scale
    )


def _box_edges(boxes: np.ndarray, center_point_box: int) -> tuple[np.ndarray, ...]:
    """(x_min, x_max, y_min, y_max, area) of each box, in the boxes' dtype."""
    if center_point_box == 0:
        y_min, y_max = np.minimum(boxes[..., 0], boxes[..., 2]), np.maximum(boxes[..., 0], boxes[..., 2])
        x_min, x_max = np.minimum(boxes[..., 1], boxes[..., 3]), np.maximum(boxes[..., 1], boxes[..., 3])
    elif center_point_box == 1:
        half_w, half_h = boxes[..., 2] / 2, boxes[..., 3] / 2
        x_min, x_max = boxes[..., 0] - half_w, boxes[..., 0] + half_w
        y_min, y_max = boxes[..., 1] - half_h, boxes[..., 1] + half_h
    else:
        raise InvalidArgument(f"NonMaxSuppression center_point_box must be 0 or 1, got {center_point_box}")
    return x_min, x_max, y_min, y_max, (x_max - x_min) * (y_max - y_min)


def _suppressed(edges: tuple[np.ndarray, ...], top: int, rest: np.ndarray, iou_threshold: np.generic) -> np.ndarray:
    """Which of the boxes ``rest`` the box ``top`` suppresses."""
    x_min, x_max, y_min, y_max, area = edges
    ix = np.minimum(x_max[top], x_max[rest]) - np.maximum(x_min[top], x_min[rest])
    iy = np.minimum(y_max[top], y_max[rest]) - np.maximum(y_min[top], y_min[rest])
    inter = ix * iy
    union = area[top] + area[rest] - inter
    ok = (ix > 0) & (iy > 0) & (inter > 0) & (area[top] > 0) & (area[rest] > 0) & (union > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / np.where(ok, union, 1)
    return ok & (iou > iou_threshold)


@kernel("NonMaxSuppression", since=10)
def NonMaxSuppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    max_output_boxes_per_class: np.ndarray | None = None,
    iou_threshold: np.ndarray | None = None,
    score_threshold: np.ndarray | None = None,
    *,
    center_point_box: int = 0,
) -> np.ndarray:
    if boxes.ndim != 3 or boxes.shape[2] != 4:
        raise InvalidArgument(f"NonMaxSuppression boxes must be (batches, boxes, 4), got shape {list(boxes.shape)}")
    if scores.ndim != 3 or scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        raise InvalidArgument(
            f"NonMaxSuppression scores must be (batches={boxes.shape[0]}, classes, boxes={boxes.shape[1]}), "
            f"got shape {list(scores.shape)}"
        )
    limit = 0
    if max_output_boxes_per_class is not None and max_output_boxes_per_class.size:
        limit = max(scalar_int(max_output_boxes_per_class, "max_output_boxes_per_class"), 0)
    iou = boxes.dtype.type(0)
    if iou_threshold is not None and iou_threshold.size:
        iou = scalar_value(iou_threshold, "iou_threshold")
    floor = None
    if score_threshold is not None and score_threshold.size:
        floor = scalar_value(score_threshold, "score_threshold")
    edges = _box_edges(boxes, center_point_box)
    selected: list[tuple[int, int, int]] = []
    for b in range(boxes.shape[0] if limit else 0):
        batch_edges = tuple(e[b] for e in edges)
        for c in range(scores.shape[1]):
            class_scores = scores[b, c]
            order = np.argsort(-class_scores, kind="stable")
            if floor is not None:
                order = order[class_scores[order] > floor]
            kept = 0
            while order.size and kept < limit:
                top = int(order[0])
                selected.append((b, c, top))
                kept += 1
                rest = order[1:]
                order = rest[~_suppressed(batch_edges, top, rest, iou)]
    return np.array(selected, dtype=np.int64).reshape(-1, 3)
