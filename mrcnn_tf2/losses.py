"""Mask R-CNN losses: RPN, Fast R-CNN box head and mask head (NVIDIA's normalisations).

Shape glossary
  B         images in the batch
  H_l, W_l  RPN feature-map size at level ``l``; A anchors per location
  N         anchors of an image, all levels concatenated in increasing level order
            (``anchors.concat_levels``, the order of ``targets.assign_rpn_targets``)
  S         RoI slots per image (``RoiTargets``); S_fg the leading slots given to the
            mask head (fg slots come first)
  C         classes including background (class 0)
  R         mask side (28)

Normalisations, read from NVIDIA's TF2 ``mrcnn_tf2/model/losses.py``
  * RPN score: sigmoid cross-entropy summed over sampled anchors (objectness ``>= 0``)
    and divided by the constant ``B * samples_per_image`` (``B * 256``).
  * RPN box: Huber (``delta = 1/9``) on the 4 coordinates of the fg anchors, divided
    by the number of those coordinates *per level*, then summed over levels. (NVIDIA
    weights coordinates whose target is non-zero, which are the fg anchors'
    coordinates except for exact-zero deltas; this module uses the fg label.)
  * Fast R-CNN class: softmax cross-entropy averaged over valid slots (NVIDIA has no
    invalid slots, so it averages over all of them).
  * Fast R-CNN box: Huber (``delta = 1``) on the GT class's deltas of the fg slots,
    divided by ``4 * #fg`` (mean over fg coordinates).
  * Mask: sigmoid cross-entropy of the GT class's logits, mean over fg pixels.
Huber is ``0.5 x^2`` for ``|x| <= delta``, else ``delta * (|x| - delta / 2)`` (Keras /
``tf.losses.huber_loss``; not divided by delta). Every loss is a float32 scalar and 0
(never NaN) when there is nothing to average. Weight decay is
``common.training.optimizers.l2_loss``.
"""
from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf

from mrcnn_tf2.ops.anchors import concat_levels
from mrcnn_tf2.ops.targets import RoiTargets, RpnTargets


def huber(x, delta: float) -> tf.Tensor:
    """Element-wise Huber loss.

    Args:
      x: any-shape float residual (prediction - target).
      delta: positive switch point from quadratic to linear.

    Returns:
      float32 tensor of the shape of ``x``.
    """
    abs_x = tf.abs(tf.cast(x, tf.float32))
    quadratic = tf.minimum(abs_x, delta)
    return 0.5 * tf.square(quadratic) + delta * (abs_x - quadratic)


def _count(mask) -> tf.Tensor:
    """Number of True entries as float32."""
    return tf.reduce_sum(tf.cast(mask, tf.float32))


def _masked_mean(values, mask, per_item=1.0) -> tf.Tensor:
    """``sum(values[mask]) / (per_item * count(mask))``, 0 when the mask is empty."""
    total = tf.reduce_sum(tf.where(mask, values, 0.0))
    return tf.math.divide_no_nan(total, per_item * _count(mask))


def _flatten_rpn(per_level: Dict[int, tf.Tensor], depth: int) -> Dict[int, tf.Tensor]:
    """``{level: [B, H_l, W_l, A * depth]} -> {level: [B, H_l * W_l * A, depth] float32}``."""
    return {level: tf.reshape(tf.cast(t, tf.float32), [tf.shape(t)[0], -1, depth])
            for level, t in per_level.items()}


def _rpn_box_loss(deltas: Dict[int, tf.Tensor], targets: RpnTargets, delta: float) -> tf.Tensor:
    """Sum over levels of the mean Huber loss of that level's fg anchor coordinates."""
    levels = sorted(deltas)
    sizes = tf.stack([tf.shape(deltas[level])[1] for level in levels])
    is_fg = tf.split(tf.equal(targets.gt_objectness, 1), sizes, axis=1, num=len(levels))
    gt_deltas = tf.split(tf.cast(targets.gt_deltas, tf.float32), sizes, axis=1, num=len(levels))
    losses = [_masked_mean(tf.reduce_sum(huber(deltas[level] - gt, delta), -1), fg, per_item=4.0)
              for level, fg, gt in zip(levels, is_fg, gt_deltas)]
    return tf.add_n(losses)


def rpn_losses(rpn_scores: Dict[int, tf.Tensor], rpn_deltas: Dict[int, tf.Tensor],
               targets: RpnTargets, *, huber_delta: float = 1.0 / 9.0,
               samples_per_image: int = 256) -> Tuple[tf.Tensor, tf.Tensor]:
    """RPN objectness and box losses.

    Args:
      rpn_scores: ``{level: [B, H_l, W_l, A]}`` objectness logits (any float dtype).
      rpn_deltas: ``{level: [B, H_l, W_l, 4 * A]}`` predicted (dy, dx, dh, dw).
      targets: :class:`RpnTargets` over the ``N`` concatenated anchors:
        ``gt_objectness [B, N] int32`` (1 fg, 0 bg, -1 not sampled),
        ``gt_deltas [B, N, 4] float32``.
      huber_delta: Huber switch point of the box loss (NVIDIA: 1/9).
      samples_per_image: anchors sampled per image (``rpn_batch_size_per_im``), the
        score-loss normaliser is ``B * samples_per_image``.

    Returns:
      ``(score_loss, box_loss)`` float32 scalars, normalised as in the module docstring.
    """
    logits = concat_levels(_flatten_rpn(rpn_scores, 1), axis=1)[..., 0]  # [B, N]
    objectness = tf.convert_to_tensor(targets.gt_objectness)
    labels = tf.cast(tf.equal(objectness, 1), tf.float32)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    normaliser = tf.cast(tf.shape(logits)[0] * samples_per_image, tf.float32)
    score_loss = tf.reduce_sum(tf.where(objectness >= 0, cross_entropy, 0.0)) / normaliser
    return score_loss, _rpn_box_loss(_flatten_rpn(rpn_deltas, 4), targets, huber_delta)


def fast_rcnn_losses(class_logits, box_deltas, targets: RoiTargets, *,
                     huber_delta: float = 1.0) -> Tuple[tf.Tensor, tf.Tensor]:
    """Box-head classification and box-regression losses.

    Args:
      class_logits: ``[B, S, C]`` float class logits.
      box_deltas: ``[B, S, 4 * C]`` float class-specific deltas, layout ``[..., C, 4]``.
      targets: :class:`RoiTargets`; uses ``valid [B, S] bool``, ``gt_classes [B, S]
        int32`` and ``gt_deltas [B, S, 4] float32``.
      huber_delta: Huber switch point of the box loss (NVIDIA: 1).

    Returns:
      ``(class_loss, box_loss)`` float32 scalars: mean cross-entropy over valid slots,
      and Huber over fg coordinates divided by ``4 * #fg``.
    """
    classes = tf.cast(targets.gt_classes, tf.int32)
    valid = tf.cast(targets.valid, tf.bool)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=classes, logits=tf.cast(class_logits, tf.float32))
    class_loss = _masked_mean(cross_entropy, valid)
    shape = tf.shape(box_deltas)
    per_class = tf.reshape(box_deltas, [shape[0], shape[1], -1, 4])
    picked = tf.cast(tf.gather(per_class, classes, batch_dims=2), tf.float32)  # [B, S, 4]
    residual = huber(picked - tf.cast(targets.gt_deltas, tf.float32), huber_delta)
    is_fg = tf.logical_and(valid, classes > 0)
    return class_loss, _masked_mean(tf.reduce_sum(residual, -1), is_fg, per_item=4.0)


def mask_loss(mask_logits, mask_targets, gt_classes, fg_mask=None) -> tf.Tensor:
    """Mask-head loss: sigmoid cross-entropy of the GT class's mask, mean over fg pixels.

    Args:
      mask_logits: ``[B, S_fg, R, R, C]`` float, channels last (the mask head's
        ``[B * S_fg, R, R, C]`` output reshaped), for the leading ``S_fg`` RoI slots.
      mask_targets: ``[B, S_fg, R, R]`` float in {0, 1} (``ops.mask_targets``).
      gt_classes: ``[B, S_fg] int32`` GT class of fg slots, 0 elsewhere.
      fg_mask: ``[B, S_fg] bool`` or None; slots counted are ``fg_mask and
        gt_classes > 0`` (None: ``gt_classes > 0``).

    Returns:
      float32 scalar, 0 when there is no fg slot.
    """
    classes = tf.cast(gt_classes, tf.int32)
    is_fg = classes > 0
    if fg_mask is not None:
        is_fg = tf.logical_and(is_fg, tf.cast(fg_mask, tf.bool))
    logits = tf.gather(mask_logits, tf.maximum(classes, 0), axis=-1, batch_dims=2)  # [B, S_fg, R, R]
    logits = tf.cast(logits, tf.float32)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(mask_targets, tf.float32), logits=logits)
    pixels = tf.cast(tf.reduce_prod(tf.shape(logits)[2:]), tf.float32)
    return _masked_mean(tf.reduce_sum(cross_entropy, axis=[2, 3]), is_fg, per_item=pixels)
