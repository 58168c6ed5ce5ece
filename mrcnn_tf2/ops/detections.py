"""Final detections: softmax, class-specific decode, clip, per-class NMS, top-K.

Shape glossary
  B  images in the batch
  S  RoIs per image (proposals fed to the box head)
  C  classes including background (class 0)
  k  candidates per class kept before NMS: ``min(pre_nms_topk_per_class, S)``
  K  ``max_detections``, detections per image returned

Algorithm (NVIDIA's ``generate_detections_gpu``)
  Class probabilities are ``softmax(class_logits)``. Every RoI is decoded once per
  class with that class's deltas (``box_ops.decode_boxes``, weights (10, 10, 5, 5))
  and clipped to the scaled image ``(image_info[:, 0], image_info[:, 1])``. Background
  is dropped, and so are boxes with a side below ``min_size`` (torchvision: 0.01 px). Each foreground class keeps its ``k`` best RoIs, then greedy NMS runs
  *per class* (boxes of different classes never suppress each other; IoU ``>
  nms_threshold`` suppresses), boxes with probability ``<= score_threshold`` are
  discarded, and the ``K`` best detections over all classes are returned sorted by
  score. NMS and the merge are ``tf.image.combined_non_max_suppression`` (in pixels,
  ``clip_boxes=False``); it runs eagerly and in ``tf.function`` (CPU kernel), not XLA.

Export graphs (``ops.export_graph.onnx_friendly``): ONNX's NonMaxSuppression (and tf2onnx's conversion
of ``CombinedNonMaxSuppression``) shares one box set across classes; class-specific boxes are not
expressible. There (:func:`_shared_box_nms`) every ``(image, class)`` pair becomes its own
"image" with one class, ``[B * C', k, 1, 4]`` -- one NonMaxSuppression over all of them -- and
the ``K`` best of the ``C' * K`` survivors per image are merged by ``top_k``. Same greedy NMS,
thresholds and order (equal detections: ``tests/mrcnn_tf2/ops/test_detections.py``); the Keras
model keeps the class-specific call.

Padding: slots after ``num_detections`` have zero boxes, class 0 and score 0.
Boxes are in pixels of the scaled (network input) image; scale them by
``image_info[:, 2]`` with ``box_ops.scale_boxes`` for original-image coordinates.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Sequence

import tensorflow as tf

from mrcnn_tf2.ops import box_ops, export_graph


class Nmsed(NamedTuple):
    """Per-image NMS output: ``boxes [B, K, 4]``, ``scores [B, K]``, ``classes [B, K]`` (0-based
    foreground), ``valid_detections [B] int32``; slots after the count are padding."""

    boxes: tf.Tensor
    scores: tf.Tensor
    classes: tf.Tensor
    valid_detections: tf.Tensor


def _class_boxes(box_deltas, rois, image_info, weights) -> tf.Tensor:
    """Decodes every RoI with every class's deltas and clips to the image.

    Args:
      box_deltas: ``[B, S, 4 * C]`` float, layout ``[..., C, 4]``.
      rois: ``[B, S, 4]`` float, pixels.
      image_info: ``[B, 5]`` float, (scaled_h, scaled_w, ...).
      weights: delta weights.

    Returns:
      ``[B, S, C, 4] float32`` boxes in pixels.
    """
    shape = tf.shape(box_deltas)
    deltas = tf.reshape(tf.cast(box_deltas, tf.float32), [shape[0], shape[1], -1, 4])
    boxes = box_ops.decode_boxes(deltas, tf.cast(rois, tf.float32)[:, :, None, :], weights)
    image_hw = tf.cast(image_info, tf.float32)[:, None, None, :2]  # [B, 1, 1, 2]
    return box_ops.clip_boxes(boxes, image_hw)


def _per_class_topk(boxes, scores, k: int):
    """Keeps the ``k`` best RoIs of every class.

    Args:
      boxes: ``[B, S, C', 4] float32``.
      scores: ``[B, S, C'] float32``.
      k: candidates per class; a no-op when ``k >= S``.

    Returns:
      ``(boxes [B, k, C', 4], scores [B, k, C'])``; row ``j`` of class ``c`` is that
      class's ``j``-th best RoI (combined NMS treats classes independently).
    """
    if scores.shape[1] is not None and k >= scores.shape[1]:
        return boxes, scores
    if scores.shape[1] is None:  # a dynamic RoI count: the same no-op when it is <= k
        return tf.cond(tf.shape(scores)[1] <= k, lambda: (boxes, scores), lambda: _topk(boxes, scores, k))
    return _topk(boxes, scores, k)


def _topk(boxes, scores, k: int):
    top, indices = tf.math.top_k(tf.transpose(scores, [0, 2, 1]), k=k, sorted=True)  # [B, C', k]
    picked = tf.gather(tf.transpose(boxes, [0, 2, 1, 3]), indices, batch_dims=2)  # [B, C', k, 4]
    return tf.transpose(picked, [0, 2, 1, 3]), tf.transpose(top, [0, 2, 1])


def generate_detections(class_logits, box_deltas, rois, image_info, *,
                        rois_valid: Optional[tf.Tensor] = None, max_detections: int = 100,
                        nms_threshold: float = 0.5, score_threshold: float = 0.05,
                        weights: Sequence[float] = box_ops.DEFAULT_WEIGHTS,
                        pre_nms_topk_per_class: int = 1000, min_size: float = 0.0) -> Dict[str, tf.Tensor]:
    """Box-head outputs -> final detections (see the module docstring).

    Args:
      class_logits: ``[B, S, C]`` float class logits (any float dtype).
      box_deltas: ``[B, S, 4 * C]`` float class-specific deltas, layout ``[..., C, 4]``.
      rois: ``[B, S, 4]`` float RoIs (proposals) in pixels of the scaled image.
      image_info: ``[B, 5]`` float (scaled_h, scaled_w, scale, orig_h, orig_w).
      rois_valid: ``[B, S] bool`` or None (all valid); invalid RoIs (e.g. proposal
        padding) get score -1, below any ``score_threshold >= 0``.
      max_detections: ``K``, detections per image.
      nms_threshold: per-class NMS IoU threshold.
      score_threshold: detections need probability ``> score_threshold``.
      weights: delta weights of the box head.
      pre_nms_topk_per_class: RoIs per class considered by NMS.
      min_size: class boxes (after clipping) with a side ``< min_size`` pixels are dropped before NMS
        (torchvision's ``remove_small_boxes(boxes, 1e-2)``; 0 keeps every box, as NVIDIA).

    Returns:
      ``{"num_detections": [B] int32, "detection_boxes": [B, K, 4] float32 (pixels,
      clipped), "detection_classes": [B, K] int32 in 1..C-1 (0 in padding),
      "detection_scores": [B, K] float32 descending (0 in padding)}``.
    """
    if max_detections < 1 or pre_nms_topk_per_class < 1:
        raise ValueError("Need max_detections >= 1 and pre_nms_topk_per_class >= 1. Received: "
                         f"max_detections={max_detections}, "
                         f"pre_nms_topk_per_class={pre_nms_topk_per_class}")
    scores = tf.nn.softmax(tf.cast(class_logits, tf.float32), axis=-1)[:, :, 1:]
    boxes = _class_boxes(box_deltas, rois, image_info, weights)[:, :, 1:]
    if rois_valid is not None:
        scores = tf.where(tf.cast(rois_valid, tf.bool)[..., None], scores, -1.0)
    if min_size > 0:
        sides = boxes[..., 2:] - boxes[..., :2]  # [B, S, C', 2]
        scores = tf.where(tf.reduce_all(sides >= min_size, axis=-1), scores, -1.0)
    boxes, scores = _per_class_topk(boxes, scores, pre_nms_topk_per_class)
    nms = _shared_box_nms if export_graph.active() else _combined_nms
    nmsed = nms(boxes, scores, max_detections, nms_threshold, score_threshold)
    valid = tf.range(max_detections)[None] < nmsed.valid_detections[:, None]
    return {
        "num_detections": tf.cast(nmsed.valid_detections, tf.int32),
        "detection_boxes": tf.where(valid[..., None], nmsed.boxes, 0.0),
        "detection_classes": tf.where(valid, tf.cast(nmsed.classes, tf.int32) + 1, 0),
        "detection_scores": tf.where(valid, nmsed.scores, 0.0),
    }


def _combined_nms(boxes, scores, max_detections: int, iou_threshold: float, score_threshold: float) -> Nmsed:
    """Per-class NMS and merge of class-specific ``boxes [B, k, C', 4]``, ``scores [B, k, C']``."""
    out = tf.image.combined_non_max_suppression(
        boxes, scores, max_output_size_per_class=max_detections, max_total_size=max_detections,
        iou_threshold=iou_threshold, score_threshold=score_threshold, pad_per_class=False, clip_boxes=False)
    return Nmsed(out.nmsed_boxes, out.nmsed_scores, out.nmsed_classes, out.valid_detections)


def _shared_box_nms(boxes, scores, max_detections: int, iou_threshold: float, score_threshold: float) -> Nmsed:
    """:func:`_combined_nms` with one class per NMS "image" (``[B * C', k, 1, 4]``), then a top-k merge."""
    shape = tf.shape(scores)  # (B, k, C')
    batch, k, classes = shape[0], shape[1], shape[2]
    per_class_boxes = tf.reshape(tf.transpose(boxes, [0, 2, 1, 3]), [batch * classes, k, 1, 4])
    per_class_scores = tf.reshape(tf.transpose(scores, [0, 2, 1]), [batch * classes, k, 1])
    out = tf.image.combined_non_max_suppression(
        per_class_boxes, per_class_scores, max_output_size_per_class=max_detections, max_total_size=max_detections,
        iou_threshold=iou_threshold, score_threshold=score_threshold, pad_per_class=False, clip_boxes=False)
    kept = tf.range(max_detections)[None] < out.valid_detections[:, None]  # [B * C', K]
    merged = tf.reshape(tf.where(kept, out.nmsed_scores, -1.0), [batch, classes * max_detections])
    top, index = tf.math.top_k(merged, k=max_detections, sorted=True)  # [B, K]
    picked = tf.gather(tf.reshape(out.nmsed_boxes, [batch, classes * max_detections, 4]), index, batch_dims=1)
    count = tf.reduce_sum(tf.cast(top >= 0.0, tf.int32), axis=1)
    return Nmsed(picked, tf.maximum(top, 0.0), index // max_detections, count)
