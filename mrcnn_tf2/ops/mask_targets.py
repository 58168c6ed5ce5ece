"""Mask-head targets: the part of each fg RoI's GT mask inside the RoI, as an R x R grid.

Shape glossary
  B  images in the batch
  M  GT instances per image (padded, static and > 0 or the result is all zeros)
  G  side of the stored GT masks (112: each mask is cropped to its GT box and resized)
  S  RoI slots per image (``RoiTargets``; fg slots first)
  R  ``output_size`` (28)

Geometry (continuous pixel coordinates, as in ``box_ops`` and aligned ROIAlign)
  A GT mask of side ``G`` tiles its GT box: mask pixel ``i`` covers the fraction
  ``[i / G, (i + 1) / G)`` of the box height, its value sits at the centre. Output cell
  ``j`` of a RoI samples the mask at the cell centre ``roi_ymin + (j + 0.5) * roi_h / R``,
  expressed in the GT box's normalised coordinates ``t = (y - gt_ymin) / gt_h``:
  bilinear between mask pixel centres, the border pixel's value up to the box edge
  (``0 <= t <= 1``) and 0 outside the GT box. So a RoI equal to its GT box gives the
  half-pixel-centre bilinear resize of the mask, and the left half of the box gives
  the resize of the mask's left half. The result is binarised: ``1`` where the
  sample is ``>= 0.5``.

Implementation: ``tf.image.crop_and_resize`` on the mask padded by one replicated
pixel on each side (so border samples clamp), times the inside-the-box indicator.
"""
from __future__ import annotations

import tensorflow as tf

_UNIT_BOX = (0.0, 0.0, 1.0, 1.0)


def _box_coords(rois, gt_boxes, size: int):
    """Normalised GT-box coordinates of the sample centres.

    Args:
      rois: ``[K, 4] float32`` pixels.
      gt_boxes: ``[K, 4] float32`` pixels, positive size.
      size: ``R``.

    Returns:
      ``(ty [K, R], tx [K, R]) float32``: sample ``j`` at ``t = 0`` lies on the GT
      box's top/left edge, ``t = 1`` on its bottom/right edge.
    """
    steps = (tf.range(size, dtype=tf.float32) + 0.5) / size  # [R]
    roi = tf.unstack(rois, num=4, axis=-1)
    gt = tf.unstack(gt_boxes, num=4, axis=-1)
    coords = []
    for lo, hi in ((0, 2), (1, 3)):
        sample = roi[lo][:, None] + steps[None] * (roi[hi] - roi[lo])[:, None]
        coords.append(tf.math.divide_no_nan(sample - gt[lo][:, None], (gt[hi] - gt[lo])[:, None]))
    return coords


def _crop_boxes(ty, tx, mask_size: int) -> tf.Tensor:
    """``crop_and_resize`` boxes on the 1-pixel padded mask: ``[K, 4] float32``.

    Mask pixel-centre coordinate of ``t`` is ``t * G - 0.5``; the padded mask shifts
    it by 1 and ``crop_and_resize`` normalises by ``(G + 2) - 1``.
    """
    def normalise(t):
        return (t * mask_size + 0.5) / (mask_size + 1.0)

    return tf.stack([normalise(ty[:, 0]), normalise(tx[:, 0]),
                     normalise(ty[:, -1]), normalise(tx[:, -1])], axis=-1)


def _inside(t) -> tf.Tensor:
    """``[K, R]`` normalised coordinates -> ``[K, R] float32``, 1 inside ``[0, 1]``."""
    return tf.cast(tf.logical_and(t >= 0.0, t <= 1.0), tf.float32)


def mask_targets(gt_masks, gt_boxes, rois, gt_indices, output_size: int = 28) -> tf.Tensor:
    """Binary mask targets of the fg RoIs (see the module docstring for the geometry).

    Args:
      gt_masks: ``[B, M, G, G]`` float (or int/bool) GT masks, each cropped to its GT
        box and resized to ``G x G``.
      gt_boxes: ``[B, M, 4]`` float GT boxes in pixels.
      rois: ``[B, S, 4]`` float RoIs in pixels (``RoiTargets.rois``).
      gt_indices: ``[B, S] int32`` matched GT of fg slots, -1 elsewhere
        (``RoiTargets.gt_indices``).
      output_size: ``R``.

    Returns:
      ``[B, S, R, R] float32`` in {0, 1}; zeros for non-fg slots.
    """
    batch, num_rois = tf.shape(rois)[0], tf.shape(rois)[1]
    zeros = tf.zeros(tf.stack([batch, num_rois, output_size, output_size]))
    if gt_masks.shape[1] == 0:
        return zeros
    num_gt, mask_size = tf.shape(gt_masks)[1], gt_masks.shape[-1]
    gt_indices = tf.cast(gt_indices, tf.int32)
    is_fg = tf.reshape(gt_indices >= 0, [-1])
    flat_idx = tf.reshape(tf.maximum(gt_indices, 0) + tf.range(batch)[:, None] * num_gt, [-1])
    unit = tf.constant(_UNIT_BOX)
    matched = tf.gather(tf.reshape(tf.cast(gt_boxes, tf.float32), [-1, 4]), flat_idx)
    matched = tf.where(is_fg[:, None], matched, unit)
    flat_rois = tf.where(is_fg[:, None], tf.reshape(tf.cast(rois, tf.float32), [-1, 4]), unit)
    ty, tx = _box_coords(flat_rois, matched, output_size)
    masks = tf.reshape(tf.cast(gt_masks, tf.float32), [-1, mask_size, mask_size, 1])
    masks = tf.pad(masks, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    crops = tf.image.crop_and_resize(masks, _crop_boxes(ty, tx, mask_size), flat_idx,
                                     [output_size, output_size], method="bilinear")[..., 0]
    crops *= _inside(ty)[:, :, None] * _inside(tx)[:, None, :]
    crops = tf.where(is_fg[:, None, None], tf.cast(crops >= 0.5, tf.float32), 0.0)
    return tf.reshape(crops, tf.shape(zeros))
