"""IoU matcher: each prediction (anchor or proposal) gets its best GT and a label.

Shape glossary
  ...  leading batch dimensions (none or ``B``)
  N    predictions: anchors (RPN) or proposals (Fast R-CNN)
  M    ground-truth boxes, possibly padded to a fixed maximum

Labels (``int32``)
  ``FOREGROUND = 1``  best IoU ``>= high``, or a low-quality match (see below)
  ``BACKGROUND = 0``  best IoU ``< low``  (also when the image has no valid GT)
  ``IGNORE = -1``     ``low <= best IoU < high``

Settings used by Mask R-CNN (the NVIDIA config)
  * RPN: ``high=0.7, low=0.3, allow_low_quality=True``.
  * Fast R-CNN: ``high=0.5, low=0.5, allow_low_quality=False``: fg is IoU >= 0.5 and
    bg is IoU in ``[0, 0.5)``, with no ignore band (``bg_thresh_lo = 0``).

Low-quality matches follow detectron2's ``Matcher(allow_low_quality_matches=True)``:
for every valid GT whose best IoU is positive, all predictions reaching that best IoU
(ties included) become foreground, so every GT that overlaps any anchor gets one. The
matched index of such a prediction stays its own argmax GT (as in detectron2; the
seed's ``ArgMaxMatcher(force_match_for_each_row=True)`` instead re-points exactly one
prediction to that GT). GTs with zero overlap everywhere get no forced match.

:func:`match_boxes` is ``match(box_ops.iou(boxes, gt_boxes), ...)`` from boxes: by
default one fused op (``custom_ops/box_matcher``: the ``[..., N, M]`` IoU matrix is
never stored; 279k anchors x 100 GT is 112 MB per image) when
``custom_ops.loader.load("box_matcher")`` gives it, else exactly that plain-TF graph.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import tensorflow as tf

from custom_ops.box_matcher import ops as fused_ops
from mrcnn_tf2.ops import box_ops

FOREGROUND = 1
BACKGROUND = 0
IGNORE = -1


class Match(NamedTuple):
    """Result of :func:`match`.

    Attributes:
      matched_idx: ``[..., N] int32`` index in ``[0, M)`` of the best valid GT of each
        prediction; 0 when there is no valid GT (only meaningful where label is 1).
      labels: ``[..., N] int32`` in {1, 0, -1}.
      max_iou: ``[..., N] float32`` IoU with that GT (0 without a valid GT).
    """

    matched_idx: tf.Tensor
    labels: tf.Tensor
    max_iou: tf.Tensor


def _masked_iou(iou: tf.Tensor, gt_valid: Optional[tf.Tensor]) -> tf.Tensor:
    """``[..., N, M]`` IoU with invalid GT columns set to -1."""
    iou = tf.cast(iou, tf.float32)
    if gt_valid is None:
        return iou
    return tf.where(tf.expand_dims(tf.cast(gt_valid, tf.bool), -2), iou, -1.0)


def _best_gt(iou: tf.Tensor):
    """``[..., N, M]`` masked IoU -> ``(matched_idx [..., N] int32, max_iou [..., N])``.

    A zero sentinel column makes the result defined for ``M = 0`` or no valid GT.
    """
    sentinel = tf.zeros(tf.concat([tf.shape(iou)[:-1], [1]], axis=0), iou.dtype)
    padded = tf.concat([iou, sentinel], axis=-1)
    num_gt = tf.shape(iou)[-1]
    matched_idx = tf.argmax(padded, axis=-1, output_type=tf.int32)
    matched_idx = tf.where(matched_idx < num_gt, matched_idx, 0)
    return matched_idx, tf.reduce_max(padded, axis=-1)


def _low_quality_mask(iou: tf.Tensor) -> tf.Tensor:
    """``[..., N] bool``: predictions that reach some GT's best (positive) IoU."""
    best_per_gt = tf.reduce_max(iou, axis=-2, keepdims=True)  # [..., 1, M]
    is_best = tf.logical_and(tf.equal(iou, best_per_gt), best_per_gt > 0.0)
    return tf.reduce_any(is_best, axis=-1)


def match(iou, high: float, low: float, allow_low_quality: bool = True,
          gt_valid: Optional[tf.Tensor] = None) -> Match:
    """Labels predictions by their best IoU with the valid GT boxes.

    Args:
      iou: ``[..., N, M] float32`` IoU between predictions and GT (``box_ops.iou``).
      high: foreground threshold, IoU ``>= high``.
      low: background threshold, IoU ``< low``; needs ``low <= high``.
      allow_low_quality: also make foreground every prediction that is the best for
        some GT (RPN).
      gt_valid: ``[..., M] bool`` or None (all valid); padded GT columns are ignored.

    Returns:
      A :class:`Match` of ``[..., N]`` tensors.
    """
    if low > high:
        raise ValueError(f"Need low <= high. Received: low={low}, high={high}")
    iou = _masked_iou(iou, gt_valid)
    matched_idx, max_iou = _best_gt(iou)
    labels = tf.where(max_iou >= high, FOREGROUND, tf.where(max_iou < low, BACKGROUND, IGNORE))
    if allow_low_quality:
        labels = tf.where(_low_quality_mask(iou), FOREGROUND, labels)
    return Match(matched_idx, tf.cast(labels, tf.int32), max_iou)


def match_boxes(boxes, gt_boxes, high: float, low: float, allow_low_quality: bool = True,
                gt_valid: Optional[tf.Tensor] = None, fused: bool = True) -> Match:
    """:func:`match` of the IoUs between ``boxes`` and ``gt_boxes`` (fused where available).

    Args:
      boxes: ``[N, 4]`` or ``[1 or B, N, 4]`` float predictions (ymin, xmin, ymax, xmax)
        in pixels; ``[1, N, 4]`` anchors are shared by every image.
      gt_boxes: ``[M, 4]`` or ``[B, M, 4]`` float GT boxes, same rank as ``boxes``.
      high, low, allow_low_quality: as :func:`match`.
      gt_valid: ``[..., M] bool`` or None (all valid).
      fused: use the fused custom op where it is built (the model config's ``custom_ops``).

    Returns:
      A :class:`Match` of ``[..., N]`` tensors (leading dimensions of ``gt_boxes``).
    """
    if low > high:
        raise ValueError(f"Need low <= high. Received: low={low}, high={high}")
    result = fused_ops.match_boxes(boxes, gt_boxes, gt_valid, high, low, allow_low_quality) if fused else None
    if result is not None:
        return Match(*result)
    return match(box_ops.iou(boxes, gt_boxes), high, low, allow_low_quality, gt_valid)
