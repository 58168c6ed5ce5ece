"""Multilevel ROIAlign in plain TF: the reference that fused kernels are checked against.

Shape glossary
  B         images in the batch
  N         boxes per image; K boxes of one level across the batch
  H_l, W_l  feature-map size at level ``l`` (stride ``2**l``)
  C         feature channels
  R         ``output_size`` (7 for the box head, 14 for the mask head)
  s         ``sampling_ratio``

Level assignment (FPN paper, eq. 1): ``l = floor(4 + log2(sqrt(h * w) / 224))`` clamped
to ``[min_level, max_level] = [2, 5]``. It is computed exactly, without logarithms, as
``min_level + #{k in (min_level, max_level] : h * w >= (224 * 2**(k - 4))**2}``, so a
112x112 box goes to level 3 and a 111.9x112 one to level 2.

Sampling (detectron2 ``ROIAlign(output_size, spatial_scale, sampling_ratio, aligned)``)
  * Box corners in image pixels map to continuous feature coordinates ``y / 2**l``.
    The value of cell ``i`` sits at the cell centre, feature coordinate ``i + 0.5``.
  * ``aligned=True`` (detectron2's ``ROIAlignV2``, default) subtracts that half cell, so
    a box and its features line up exactly. ``aligned=False`` is the legacy
    Detectron / seed / Model Garden geometry (no shift; like detectron2 it then
    also stretches boxes smaller than one cell to one cell).
  * Each of the ``R x R`` bins is split into ``s x s`` equal sub-cells; the feature is
    bilinearly interpolated at every sub-cell centre and the ``s * s`` values are
    averaged. ``sampling_ratio`` must be >= 1 (detectron2's adaptive ``0`` has a
    per-box sample count and is not expressible with a static crop size).
  * Implementation: ``tf.image.crop_and_resize`` samples an evenly spaced
    ``(R * s) x (R * s)`` grid placed on exactly those sub-cell centres, then an
    ``s x s`` average pool reduces it to ``R x R``. Its gradient is :func:`crop_and_resize`'s
    (TF's own CPU gradient loses updates where boxes overlap).
  * Borders: as in detectron2, a sample with ``-1 <= y <= H_l`` is clamped into
    ``[0, H_l - 1]`` (done by bilinear sampling of a one-cell replicate-padded map)
    and a sample further out contributes 0.

The seed's ``selective_crop_and_resize`` (and Model Garden's ``multilevel_crop_and_resize``)
gathers a ``2R x 2R`` grid and average-pools it 2x2, but those four points are the
bilinear neighbours of *one* sample per bin: it equals ``sampling_ratio=1,
aligned=False`` here, apart from border clamping and the one-cell minimum size.

ONNX export graphs (``ops.export_graph.onnx_friendly``) sample with :func:`gather_roi_align`: the same
points and weights by four ``tf.gather`` per sample, since tf2onnx's ``CropAndResize`` is a per-box Loop.

Per-level crops are gathered with ``tf.where`` and put back with ``tf.dynamic_stitch``
(dynamic shapes): fine eagerly and in ``tf.function``, not for XLA.

Fused op: :func:`multilevel_roi_align` runs ``custom_ops/roi_align`` (one C++/CUDA kernel
for all levels, same geometry, no gradient for the boxes) when the library is built and
``fused`` (the model config's ``custom_ops``; not ``MRCNN_NO_CUSTOM_OPS=1``), else
:func:`plain_multilevel_roi_align`, the plain-TF path described above.
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from custom_ops.roi_align import ops as fused_ops
from mrcnn_tf2.ops import box_ops, export_graph

CANONICAL_LEVEL = 4
CANONICAL_SIZE = 224.0


def assign_levels(boxes, min_level: int = 2, max_level: int = 5,
                  canonical_level: int = CANONICAL_LEVEL,
                  canonical_size: float = CANONICAL_SIZE) -> tf.Tensor:
    """FPN level of each box, ``floor(4 + log2(sqrt(area) / 224))`` clamped.

    Args:
      boxes: ``[..., 4]`` float, (ymin, xmin, ymax, xmax) in image pixels.
      min_level: smallest level returned.
      max_level: largest level returned.
      canonical_level: level of a box of side ``canonical_size``.
      canonical_size: side (pixels) of a box mapped to ``canonical_level``.

    Returns:
      ``[...] int32`` in ``[min_level, max_level]``; empty boxes go to ``min_level``.
    """
    areas = box_ops.box_areas(boxes)
    levels = tf.fill(tf.shape(areas), min_level)
    for level in range(min_level + 1, max_level + 1):
        threshold = (canonical_size * 2.0 ** (level - canonical_level)) ** 2
        levels += tf.cast(areas >= threshold, tf.int32)
    return levels


def _sample_range(lo, hi, spatial_scale: float, num: int, aligned: bool):
    """First and last of ``num`` evenly spaced sample centres (feature coordinates)."""
    offset = 0.5 if aligned else 0.0
    start = lo * spatial_scale - offset
    length = (hi - lo) * spatial_scale
    if not aligned:
        length = tf.maximum(length, 1.0)
    step = length / num
    return start + 0.5 * step, start + (num - 0.5) * step


def _crop_boxes(boxes, spatial_scale: float, padded_hw, num: int, aligned: bool) -> tf.Tensor:
    """``[K, 4]`` image-pixel boxes -> normalised ``crop_and_resize`` boxes on the padded map.

    ``crop_and_resize`` samples ``y1 * (Hp - 1) + i * (y2 - y1) * (Hp - 1) / (num - 1)``;
    the padded map has one extra row/column on each side, hence the ``+ 1``.
    """
    ymin, xmin, ymax, xmax = tf.unstack(boxes, num=4, axis=-1)
    y_first, y_last = _sample_range(ymin, ymax, spatial_scale, num, aligned)
    x_first, x_last = _sample_range(xmin, xmax, spatial_scale, num, aligned)
    scale_y = tf.cast(padded_hw[0] - 1, tf.float32)
    scale_x = tf.cast(padded_hw[1] - 1, tf.float32)
    return tf.stack([(y_first + 1.0) / scale_y, (x_first + 1.0) / scale_x,
                     (y_last + 1.0) / scale_y, (x_last + 1.0) / scale_x], axis=-1)


def _sample_points(lo, hi, spatial_scale: float, num: int, aligned: bool) -> tf.Tensor:
    """``[K]`` box sides -> ``[K, num]`` sub-cell centres in feature coordinates (as :func:`_sample_range`)."""
    first, last = _sample_range(lo, hi, spatial_scale, num, aligned)
    fraction = tf.range(num, dtype=tf.float32) / float(max(num - 1, 1))
    return first[:, None] + (last - first)[:, None] * fraction[None, :]


def _bilinear_taps(coords, size):
    """Detectron2's border rule on one axis: ``[K, n]`` coordinates -> (low, high) int32 cells, their
    ``[K, n]`` weights, and whether each coordinate is inside ``[-1, size]`` (else it contributes 0)."""
    size_f = tf.cast(size, tf.float32)
    inside = tf.logical_and(coords >= -1.0, coords <= size_f)
    coords = tf.maximum(coords, 0.0)
    low = tf.minimum(tf.floor(coords), size_f - 1.0)
    high = tf.minimum(low + 1.0, size_f - 1.0)
    frac = tf.where(low >= size_f - 1.0, 0.0, coords - low)
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), 1.0 - frac, frac, inside


def gather_roi_align(features, boxes, box_indices, output_size: int, spatial_scale: float,
                     sampling_ratio: int = 2, aligned: bool = True) -> tf.Tensor:
    """:func:`roi_align` by four gathers per sample (the ONNX export graph's form: no ``CropAndResize``).

    Same arguments, geometry and border rule; ``[K, R, R, C]`` in the dtype of ``features``. It
    materialises ``4 x [K, (R s)^2, C]`` gathered values, so it is for export, not training.
    """
    _check_sizes(output_size, sampling_ratio)
    num = output_size * sampling_ratio
    shape = tf.shape(features)  # (B, H, W, C)
    boxes = tf.cast(boxes, tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, num=4, axis=-1)
    y_low, y_high, y_w0, y_w1, y_in = _bilinear_taps(_sample_points(ymin, ymax, spatial_scale, num, aligned), shape[1])
    x_low, x_high, x_w0, x_w1, x_in = _bilinear_taps(_sample_points(xmin, xmax, spatial_scale, num, aligned), shape[2])
    flat = tf.reshape(tf.cast(features, tf.float32), [-1, shape[3]])  # [B * H * W, C]
    base = tf.cast(box_indices, tf.int32)[:, None, None] * shape[1] * shape[2]  # [K, 1, 1]
    inside = tf.cast(tf.logical_and(y_in[:, :, None], x_in[:, None, :]), tf.float32)  # [K, n, n]
    total = 0.0
    for rows, row_w in ((y_low, y_w0), (y_high, y_w1)):
        for cols, col_w in ((x_low, x_w0), (x_high, x_w1)):
            index = base + rows[:, :, None] * shape[2] + cols[:, None, :]  # [K, n, n]
            weight = row_w[:, :, None] * col_w[:, None, :] * inside
            total += tf.gather(flat, index) * weight[..., None]  # [K, n, n, C]
    if sampling_ratio > 1:
        total = tf.nn.avg_pool2d(total, sampling_ratio, sampling_ratio, padding="VALID")
    return tf.cast(total, features.dtype)


def crop_and_resize(image, crop_boxes, box_indices, num: int) -> tf.Tensor:
    """``tf.image.crop_and_resize`` (bilinear, extrapolation 0) with a race-free gradient for ``image``.

    TF's CPU ``CropAndResizeGradImage`` shards the boxes over threads that ``+=`` into the same image
    without atomics, so overlapping boxes lose updates (measured: 4.4 % of a 4000-box gradient lost, a
    different amount each run). Here the image gradient scatters the same bilinear weights with
    ``tensor_scatter_nd_add``; the box gradient is TF's (a serial loop).

    Args:
      image: ``[B, H, W, C]``.
      crop_boxes: ``[K, 4] float32`` normalised ``crop_and_resize`` boxes.
      box_indices: ``[K] int32`` image of each box.
      num: crop side ``n``.

    Returns:
      ``[K, n, n, C] float32``.
    """
    @tf.custom_gradient
    def crops(image, crop_boxes):
        out = tf.image.crop_and_resize(image, crop_boxes, box_indices, [num, num], method="bilinear",
                                       extrapolation_value=0.0)

        def grad(d_crops):
            d_boxes = tf.raw_ops.CropAndResizeGradBoxes(grads=d_crops, image=image, boxes=crop_boxes,
                                                        box_ind=box_indices, method="bilinear")
            return _crop_image_gradient(d_crops, crop_boxes, box_indices, tf.shape(image), image.dtype), d_boxes

        return out, grad

    return crops(image, crop_boxes)


def _crop_taps(lo, hi, size, num: int):
    """One axis of ``crop_and_resize``'s samples, in its own float order: ``[K]`` normalised sides ->
    (low, high) ``[K, n]`` int32 cells, ``[K, n]`` weights of each, and whether each sample is inside."""
    extent = tf.cast(size - 1, tf.float32)
    if num > 1:
        scale = (hi - lo) * extent / float(num - 1)
        coords = lo[:, None] * extent + tf.range(num, dtype=tf.float32)[None, :] * scale[:, None]
    else:
        coords = (0.5 * (lo + hi) * extent)[:, None]
    inside = tf.logical_and(coords >= 0.0, coords <= extent)
    coords = tf.where(inside, coords, 0.0)
    low, high = tf.floor(coords), tf.math.ceil(coords)
    frac = coords - low
    weight = tf.cast(inside, tf.float32)
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), (1.0 - frac) * weight, frac * weight


def _crop_image_gradient(d_crops, crop_boxes, box_indices, image_shape, dtype):
    """``[K, n, n, C]`` crop gradient -> ``[B, H, W, C]`` image gradient: four ``tensor_scatter_nd_add``
    (a serial loop over the samples on CPU, so no lost updates)."""
    num = d_crops.shape[1]
    height, width, channels = image_shape[1], image_shape[2], image_shape[3]
    y_low, y_high, y_w0, y_w1 = _crop_taps(crop_boxes[:, 0], crop_boxes[:, 2], height, num)
    x_low, x_high, x_w0, x_w1 = _crop_taps(crop_boxes[:, 1], crop_boxes[:, 3], width, num)
    base = box_indices[:, None, None] * height  # [K, 1, 1]
    cells = image_shape[0] * height * width
    total = tf.zeros(tf.stack([cells, channels]), tf.float32)
    for rows, row_w in ((y_low, y_w0), (y_high, y_w1)):
        for cols, col_w in ((x_low, x_w0), (x_high, x_w1)):
            index = (base + rows[:, :, None]) * width + cols[:, None, :]  # [K, n, n]
            weight = row_w[:, :, None] * col_w[:, None, :]
            total = tf.tensor_scatter_nd_add(total, index[..., None], d_crops * weight[..., None])
    return tf.cast(tf.reshape(total, image_shape), dtype)


def roi_align(features, boxes, box_indices, output_size: int, spatial_scale: float,
              sampling_ratio: int = 2, aligned: bool = True) -> tf.Tensor:
    """ROIAlign on one feature map.

    Args:
      features: ``[B, H, W, C]`` float feature map.
      boxes: ``[K, 4] float32`` (ymin, xmin, ymax, xmax) in image pixels.
      box_indices: ``[K] int32`` image of each box, in ``[0, B)``.
      output_size: ``R``, output bins per side.
      spatial_scale: feature cells per image pixel (``2**-level``).
      sampling_ratio: ``s >= 1`` samples per bin side.
      aligned: half-cell offset (detectron2 ``aligned=True``), see the module docstring.

    Returns:
      ``[K, R, R, C]`` in the dtype of ``features``.
    """
    _check_sizes(output_size, sampling_ratio)
    num = output_size * sampling_ratio
    padded = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    crop_boxes = _crop_boxes(tf.cast(boxes, tf.float32), spatial_scale, tf.shape(padded)[1:3], num, aligned)
    crops = crop_and_resize(padded, crop_boxes, tf.cast(box_indices, tf.int32), num)
    if sampling_ratio > 1:
        crops = tf.nn.avg_pool2d(crops, sampling_ratio, sampling_ratio, padding="VALID")
    return tf.cast(crops, features.dtype)


def multilevel_roi_align(features: Dict[int, tf.Tensor], boxes, output_size: int = 7,
                         sampling_ratio: int = 2, aligned: bool = True,
                         min_level: int = 2, max_level: int = 5, fused: bool = True) -> tf.Tensor:
    """ROIAlign of each box on its FPN level: the fused custom op when ``fused`` and built, else plain TF.

    Arguments and result as in :func:`plain_multilevel_roi_align`; ``fused`` is the model config's
    ``custom_ops``.
    """
    _check_levels(features, min_level, max_level)
    _check_sizes(output_size, sampling_ratio)
    crops = fused_ops.multilevel_roi_align([features[level] for level in range(min_level, max_level + 1)],
                                           boxes, output_size, sampling_ratio, aligned, min_level) if fused else None
    if crops is not None:
        return crops
    return plain_multilevel_roi_align(features, boxes, output_size, sampling_ratio, aligned, min_level, max_level)


def _check_sizes(output_size: int, sampling_ratio: int) -> None:
    if output_size < 1 or sampling_ratio < 1:
        raise ValueError("Need output_size >= 1 and sampling_ratio >= 1. Received: "
                         f"output_size={output_size}, sampling_ratio={sampling_ratio}")


def _check_levels(features: Dict[int, tf.Tensor], min_level: int, max_level: int) -> None:
    missing = [level for level in range(min_level, max_level + 1) if level not in features]
    if missing:
        raise ValueError(f"features lacks levels {missing}. Received: levels={sorted(features)}")


def plain_multilevel_roi_align(features: Dict[int, tf.Tensor], boxes, output_size: int = 7,
                               sampling_ratio: int = 2, aligned: bool = True,
                               min_level: int = 2, max_level: int = 5) -> tf.Tensor:
    """ROIAlign of each box on its FPN level, in plain TF (the fused op's fallback and reference).

    Args:
      features: ``{level: [B, H_l, W_l, C]}``, stride ``2**level``; must hold
        ``min_level..max_level`` (extra levels such as P6 are ignored).
      boxes: ``[B, N, 4] float32`` (ymin, xmin, ymax, xmax) in image pixels.
      output_size: ``R`` (7 box head, 14 mask head).
      sampling_ratio: ``s >= 1`` samples per bin side.
      aligned: half-cell offset, see the module docstring.
      min_level: smallest level used.
      max_level: largest level used.

    Returns:
      ``[B, N, R, R, C]`` in the dtype of the features.
    """
    _check_levels(features, min_level, max_level)
    shape = tf.shape(boxes)
    flat = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    image_of_box = tf.repeat(tf.range(shape[0]), shape[1])
    levels = assign_levels(flat, min_level, max_level)
    align = gather_roi_align if export_graph.active() else roi_align
    positions, crops = [], []
    for level in range(min_level, max_level + 1):
        where = tf.cast(tf.where(tf.equal(levels, level))[:, 0], tf.int32)
        positions.append(where)
        crops.append(align(features[level], tf.gather(flat, where), tf.gather(image_of_box, where),
                           output_size, 2.0 ** -level, sampling_ratio, aligned))
    stitched = tf.dynamic_stitch(positions, crops)
    channels = tf.shape(features[min_level])[-1]
    return tf.reshape(stitched, tf.stack([shape[0], shape[1], output_size, output_size, channels]))
