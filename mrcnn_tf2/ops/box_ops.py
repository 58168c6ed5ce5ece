"""Box arithmetic: the one module that encodes, decodes, intersects and clips boxes.

Shape glossary
  ...   any leading dimensions (none, a batch ``B``, or ``B, N``)
  B     images in a batch
  N, M  boxes in the first / second set (e.g. N anchors or proposals, M GT boxes)

Conventions
  * A box is ``[..., 4] float32`` as ``(ymin, xmin, ymax, xmax)`` in pixels of the
    network input image.
  * Coordinates are *continuous*: a box covering pixels 0..9 is ``(0, 0, 10, 10)``,
    its height is ``ymax - ymin`` and its centre ``(ymin + ymax) / 2``. There is no
    legacy ``+ 1`` (the seed's ``utils/box_utils.py`` used it, its RPN coder did not;
    detectron2 and Model Garden use none).
  * Deltas are ``[..., 4] float32`` as ``(dy, dx, dh, dw)``: the Faster R-CNN
    parameterisation ``dy = wy * (yc - yc_a) / h_a``, ``dh = wh * log(h / h_a)``.
  * Every function computes in float32 (inputs of other float dtypes are cast), so
    box arithmetic stays exact under mixed precision.
"""
from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

# Largest dh/dw applied on decode: a box at most 1000/16 times its anchor (Detectron).
BBOX_XFORM_CLIP = math.log(1000.0 / 16.0)
# Fast R-CNN head weights (the seed's ``bbox_reg_weights``); the RPN uses (1, 1, 1, 1).
DEFAULT_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _f32(x) -> tf.Tensor:
    """Any tensor-like -> float32 tensor."""
    return tf.cast(x, tf.float32)


def _corners(boxes: tf.Tensor):
    """``[..., 4]`` boxes -> four ``[...]`` float32 tensors ymin, xmin, ymax, xmax."""
    return tf.unstack(_f32(boxes), num=4, axis=-1)


def centers_and_sizes(boxes) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Boxes -> ``(yc, xc, h, w)``.

    Args:
      boxes: ``[..., 4]`` float, (ymin, xmin, ymax, xmax) in pixels.

    Returns:
      Four ``[...]`` float32 tensors: centre y, centre x, height, width (may be negative
      for inverted boxes).
    """
    ymin, xmin, ymax, xmax = _corners(boxes)
    return (ymin + ymax) * 0.5, (xmin + xmax) * 0.5, ymax - ymin, xmax - xmin


def box_areas(boxes) -> tf.Tensor:
    """Areas of boxes; inverted boxes count as empty.

    Args:
      boxes: ``[..., 4]`` float, (ymin, xmin, ymax, xmax) in pixels.

    Returns:
      ``[...]`` float32, ``max(h, 0) * max(w, 0)``.
    """
    _, _, h, w = centers_and_sizes(boxes)
    return tf.maximum(h, 0.0) * tf.maximum(w, 0.0)


def valid_box_mask(boxes, min_size: float = 0.0) -> tf.Tensor:
    """Which boxes are larger than ``min_size`` on both sides.

    With ``min_size=0`` this is "non-empty", which also rejects GT padding such as
    all ``-1`` or all ``0`` rows.

    Args:
      boxes: ``[..., 4]`` float, (ymin, xmin, ymax, xmax) in pixels.
      min_size: strict lower bound on height and width, in pixels.

    Returns:
      ``[...]`` bool, ``h > min_size and w > min_size``.
    """
    _, _, h, w = centers_and_sizes(boxes)
    return tf.logical_and(h > min_size, w > min_size)


def encode_boxes(boxes, anchors, weights: Sequence[float] = DEFAULT_WEIGHTS) -> tf.Tensor:
    """Regression targets that move ``anchors`` onto ``boxes``.

    Args:
      boxes: ``[..., 4]`` float, target boxes (ymin, xmin, ymax, xmax) in pixels.
      anchors: ``[..., 4]`` float, reference boxes, broadcastable against ``boxes``.
        Both must have positive height and width (``log`` of a size ratio).
      weights: ``(wy, wx, wh, ww)`` multipliers; (10, 10, 5, 5) for the box head,
        (1, 1, 1, 1) for the RPN as in the seed.

    Returns:
      ``[..., 4]`` float32 deltas ``(dy, dx, dh, dw)``.
    """
    yc, xc, h, w = centers_and_sizes(boxes)
    yc_a, xc_a, h_a, w_a = centers_and_sizes(anchors)
    wy, wx, wh, ww = weights
    return tf.stack([wy * (yc - yc_a) / h_a,
                     wx * (xc - xc_a) / w_a,
                     wh * tf.math.log(h / h_a),
                     ww * tf.math.log(w / w_a)], axis=-1)


def decode_boxes(deltas, anchors, weights: Sequence[float] = DEFAULT_WEIGHTS) -> tf.Tensor:
    """Inverse of :func:`encode_boxes`, with ``dh``/``dw`` clipped at ``log(1000/16)``.

    Args:
      deltas: ``[..., 4]`` float, (dy, dx, dh, dw) as produced by a regression head.
      anchors: ``[..., 4]`` float, reference boxes, broadcastable against ``deltas``.
      weights: the ``(wy, wx, wh, ww)`` used to encode.

    Returns:
      ``[..., 4]`` float32 boxes (ymin, xmin, ymax, xmax) in pixels.
    """
    dy, dx, dh, dw = tf.unstack(_f32(deltas), num=4, axis=-1)
    wy, wx, wh, ww = weights
    yc_a, xc_a, h_a, w_a = centers_and_sizes(anchors)
    yc = dy / wy * h_a + yc_a
    xc = dx / wx * w_a + xc_a
    half_h = 0.5 * tf.exp(tf.minimum(dh / wh, BBOX_XFORM_CLIP)) * h_a
    half_w = 0.5 * tf.exp(tf.minimum(dw / ww, BBOX_XFORM_CLIP)) * w_a
    return tf.stack([yc - half_h, xc - half_w, yc + half_h, xc + half_w], axis=-1)


def iou(boxes_a, boxes_b) -> tf.Tensor:
    """Pairwise intersection over union, batched over any leading dimensions.

    Empty or inverted boxes have IoU 0 with everything (never NaN).

    Args:
      boxes_a: ``[..., N, 4]`` float, (ymin, xmin, ymax, xmax) in pixels.
      boxes_b: ``[..., M, 4]`` float, same leading dimensions as ``boxes_a``.

    Returns:
      ``[..., N, M]`` float32 in [0, 1]; e.g. ``[N, 4] x [M, 4] -> [N, M]`` and
      ``[B, N, 4] x [B, M, 4] -> [B, N, M]``.
    """
    a = tf.expand_dims(_f32(boxes_a), -2)  # [..., N, 1, 4]
    b = tf.expand_dims(_f32(boxes_b), -3)  # [..., 1, M, 4]
    top_left = tf.maximum(a[..., :2], b[..., :2])
    bottom_right = tf.minimum(a[..., 2:], b[..., 2:])
    inter_hw = tf.maximum(bottom_right - top_left, 0.0)
    inter = inter_hw[..., 0] * inter_hw[..., 1]
    union = box_areas(a) + box_areas(b) - inter
    return tf.math.divide_no_nan(inter, union)


def _image_hw(image_shape) -> tf.Tensor:
    """``(H, W)`` or ``[..., 2]`` -> ``[..., 4]`` float32 ``(H, W, H, W)``."""
    hw = _f32(image_shape)
    return tf.concat([hw, hw], axis=-1)


def clip_boxes(boxes, image_shape) -> tf.Tensor:
    """Clips boxes to the image: y into [0, H], x into [0, W].

    Args:
      boxes: ``[..., 4]`` float, (ymin, xmin, ymax, xmax) in pixels.
      image_shape: ``(H, W)``, or ``[..., 2]`` float/int (height, width) broadcastable
        against ``boxes[..., :2]`` (for boxes ``[B, N, 4]`` pass ``[B, 1, 2]``).

    Returns:
      ``[..., 4]`` float32 clipped boxes.
    """
    return tf.minimum(tf.maximum(_f32(boxes), 0.0), _image_hw(image_shape))


def normalize_boxes(boxes, image_shape) -> tf.Tensor:
    """Pixels -> [0, 1] coordinates (divides y by H and x by W).

    Args:
      boxes: ``[..., 4]`` float, (ymin, xmin, ymax, xmax) in pixels.
      image_shape: ``(H, W)`` or ``[..., 2]`` broadcastable as in :func:`clip_boxes`.

    Returns:
      ``[..., 4]`` float32 normalised boxes.
    """
    return _f32(boxes) / _image_hw(image_shape)


def denormalize_boxes(boxes, image_shape) -> tf.Tensor:
    """[0, 1] coordinates -> pixels; inverse of :func:`normalize_boxes`.

    Args:
      boxes: ``[..., 4]`` float, normalised (ymin, xmin, ymax, xmax).
      image_shape: ``(H, W)`` or ``[..., 2]`` broadcastable as in :func:`clip_boxes`.

    Returns:
      ``[..., 4]`` float32 boxes in pixels.
    """
    return _f32(boxes) * _image_hw(image_shape)


def scale_boxes(boxes, scale) -> tf.Tensor:
    """Multiplies coordinates, e.g. to map network-input pixels to the original image.

    Pass ``scale = original_size / resized_size`` (the inverse of the resize factor the
    input pipeline applied) to get boxes in original-image pixels.

    Args:
      boxes: ``[..., 4]`` float, (ymin, xmin, ymax, xmax) in pixels.
      scale: scalar, ``[..., 1]`` (same factor for y and x) or ``[..., 2]`` as
        ``(scale_y, scale_x)``, broadcastable against ``boxes[..., :2]``.

    Returns:
      ``[..., 4]`` float32 scaled boxes.
    """
    scale = _f32(scale)
    if scale.shape.rank and scale.shape[-1] == 2:
        scale = tf.concat([scale, scale], axis=-1)
    return _f32(boxes) * scale
