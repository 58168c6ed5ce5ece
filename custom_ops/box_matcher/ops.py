"""Python wrapper of ``MrcnnMatchBoxes`` (see ``box_matcher.cc``).

:func:`match_boxes` returns ``None`` when the op library is unavailable
(``custom_ops.loader.load`` returned ``None``) or the shapes are not ones the op takes;
the caller, ``mrcnn_tf2.ops.matcher.match_boxes``, then runs
``match(box_ops.iou(...))``. The op gives the same values (bit-identical IoUs).
"""
from __future__ import annotations

from typing import Optional, Tuple

import tensorflow as tf

from custom_ops import loader

OP_NAME = "MrcnnMatchBoxes"
tf.no_gradient(OP_NAME)


def _library():
    """The loaded op module, or ``None``."""
    return loader.load("box_matcher")


def available() -> bool:
    """Whether the fused op can be used in this process."""
    return _library() is not None


def match_boxes(boxes, gt_boxes, gt_valid, high: float, low: float,
                allow_low_quality: bool) -> Optional[Tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """Fused ``matcher.match(box_ops.iou(boxes, gt_boxes), ...)``, or ``None``.

    Args:
      boxes: ``[N, 4]`` with ``gt_boxes [M, 4]``, or ``[1 or B, N, 4]`` with
        ``gt_boxes [B, M, 4]``; float pixels (ymin, xmin, ymax, xmax).
      gt_boxes: see ``boxes``.
      gt_valid: ``[..., M] bool`` like ``gt_boxes[..., 0]``, or None (all valid).
      high, low, allow_low_quality: as ``matcher.match``.

    Returns:
      ``(matched_idx int32, labels int32, max_iou float32)``, each ``[..., N]`` with the
      leading dimensions of ``gt_boxes``; or ``None``.
    """
    library = _library()
    boxes = tf.cast(tf.stop_gradient(boxes), tf.float32)
    gt_boxes = tf.cast(tf.stop_gradient(gt_boxes), tf.float32)
    rank = gt_boxes.shape.rank
    if library is None or rank not in (2, 3) or boxes.shape.rank != rank:
        return None
    if gt_valid is None:
        gt_valid = tf.ones(tf.shape(gt_boxes)[:-1], tf.bool)
    gt_valid = tf.cast(gt_valid, tf.bool)
    if rank == 2:
        boxes, gt_boxes, gt_valid = boxes[None], gt_boxes[None], gt_valid[None]
    outputs = library.mrcnn_match_boxes(boxes, gt_boxes, gt_valid, high=float(high), low=float(low),
                                        allow_low_quality=bool(allow_low_quality))
    return tuple(t[0] for t in outputs) if rank == 2 else tuple(outputs)
