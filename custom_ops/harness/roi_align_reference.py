"""NumPy reference of multilevel ROIAlign, forward and backward (no TensorFlow).

The CUDA harness compares the CUDA kernels with it on a GPU machine; the tests compare
it with the C++ CPU kernel (tests/custom_ops/test_roi_align_op.py). Geometry as in
``custom_ops/roi_align/roi_align_geometry.h``. Loops over boxes, vectorised over the
``(R * s) x (R * s)`` samples and the channels: meant for harness-sized problems.

Shapes: levels ``[B, H_l, W_l, C]`` for ``min_level, min_level + 1, ...``; boxes
``[B, N, 4]`` (ymin, xmin, ymax, xmax) in image pixels; crops ``[B, N, R, R, C]``.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np


def assign_levels(boxes: np.ndarray, min_level: int, max_level: int) -> np.ndarray:
    """``[...]`` int FPN levels of ``[..., 4]`` boxes (float32 areas, exact thresholds)."""
    boxes = boxes.astype(np.float32)
    area = np.maximum(boxes[..., 2] - boxes[..., 0], 0) * np.maximum(boxes[..., 3] - boxes[..., 1], 0)
    levels = np.full(area.shape, min_level)
    for level in range(min_level + 1, max_level + 1):
        levels += area >= np.float32((224.0 * 2.0 ** (level - 4)) ** 2)
    return levels


def axis_samples(lo: float, hi: float, scale: float, output_size: int, ratio: int, aligned: bool, extent: int):
    """``(low, high, w_low, w_high, valid)``, each ``[R * s]``: one axis of every sample of a box."""
    length = (hi - lo) * scale
    if not aligned:
        length = max(length, 1.0)
    index = np.arange(output_size * ratio)
    coord = lo * scale - (0.5 if aligned else 0.0) + (index + 0.5) * length / (output_size * ratio)
    valid = (coord >= -1.0) & (coord <= extent) & (extent > 0)
    coord = np.maximum(coord, 0.0)
    low = np.minimum(np.floor(coord).astype(np.int64), max(extent - 1, 0))
    high = np.minimum(low + 1, max(extent - 1, 0))
    coord = np.where(low >= extent - 1, low, coord)
    w_high = coord - low
    return low, high, 1.0 - w_high, w_high, valid


def _box_samples(box, level: int, shape, output_size: int, ratio: int, aligned: bool):
    scale = 2.0 ** -level
    ys = axis_samples(float(box[0]), float(box[2]), scale, output_size, ratio, aligned, shape[0])
    xs = axis_samples(float(box[1]), float(box[3]), scale, output_size, ratio, aligned, shape[1])
    return ys, xs


def _corners(ys, xs):
    """Four ``(rows, cols, weights)`` of the bilinear neighbours, ``[Rs, Rs]`` each, masked."""
    mask = ys[4][:, None] & xs[4][None, :]
    corners = []
    for y_index, y_weight in ((ys[0], ys[2]), (ys[1], ys[3])):
        for x_index, x_weight in ((xs[0], xs[2]), (xs[1], xs[3])):
            weight = y_weight[:, None] * x_weight[None, :] * mask
            corners.append((y_index[:, None], x_index[None, :], weight))
    return corners


def forward(levels: Sequence[np.ndarray], boxes: np.ndarray, output_size: int = 7, sampling_ratio: int = 2,
            aligned: bool = False, min_level: int = 2) -> np.ndarray:
    """``[B, N, R, R, C]`` float64 crops."""
    batch, num = boxes.shape[:2]
    channels, size, ratio = levels[0].shape[-1], output_size, sampling_ratio
    assigned = assign_levels(boxes, min_level, min_level + len(levels) - 1)
    out = np.zeros((batch, num, size, size, channels))
    for b in range(batch):
        for n in range(num):
            fmap = levels[assigned[b, n] - min_level][b].astype(np.float64)
            ys, xs = _box_samples(boxes[b, n], assigned[b, n], fmap.shape, size, ratio, aligned)
            if fmap.size == 0:
                continue
            values = sum(w[..., None] * fmap[r, c] for r, c, w in _corners(ys, xs))
            out[b, n] = values.reshape(size, ratio, size, ratio, channels).mean(axis=(1, 3))
    return out


def backward(grad: np.ndarray, levels: Sequence[np.ndarray], boxes: np.ndarray, output_size: int = 7,
             sampling_ratio: int = 2, aligned: bool = False, min_level: int = 2) -> List[np.ndarray]:
    """Gradients ``[B, H_l, W_l, C]`` float64 of the levels, for ``grad [B, N, R, R, C]``."""
    grads = [np.zeros(level.shape) for level in levels]
    ratio = sampling_ratio
    assigned = assign_levels(boxes, min_level, min_level + len(levels) - 1)
    for b in range(boxes.shape[0]):
        for n in range(boxes.shape[1]):
            target = grads[assigned[b, n] - min_level][b]
            ys, xs = _box_samples(boxes[b, n], assigned[b, n], target.shape, output_size, ratio, aligned)
            if target.size == 0:
                continue
            per_sample = np.repeat(np.repeat(grad[b, n], ratio, axis=0), ratio, axis=1) / ratio ** 2
            for rows, cols, weight in _corners(ys, xs):
                rows, cols = np.broadcast_arrays(rows, cols)
                np.add.at(target, (rows, cols), weight[..., None] * per_sample)
    return grads
