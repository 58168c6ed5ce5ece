"""Training targets: RPN anchor labels/deltas and Fast R-CNN RoI sampling.

Shape glossary
  B  images in the batch
  N  anchors of an image (all levels concatenated, ``anchors.concat_levels`` order)
  P  proposals per image (RPN output after NMS)
  M  GT instances per image, padded to a fixed maximum
  S  sampled slots per image (256 anchors for the RPN, 512 RoIs)

GT padding
  Pass ``gt_valid [B, M] bool``, or let it default to :func:`gt_valid_mask`: non-empty
  box (``h > 0 and w > 0``) and, where classes are given, class ``> 0``. So NVIDIA's
  ``-1`` padding and all-zero padding both work. An image without any valid GT gets
  only background (labels 0, zero deltas, no NaN).

Naming: everything returned is a target, hence ``gt_*``; ``-1`` marks "no GT" in index
tensors and "not sampled / ignored" in the RPN objectness.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import tensorflow as tf

from mrcnn_tf2.ops import box_ops, matcher, sampler

RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # NVIDIA's code encodes RPN targets without weights
_UNIT_BOX = (0.0, 0.0, 1.0, 1.0)


class RpnTargets(NamedTuple):
    """Targets of :func:`assign_rpn_targets`.

    Attributes:
      gt_objectness: ``[B, N] int32``: 1 sampled fg, 0 sampled bg, -1 not sampled.
      gt_deltas: ``[B, N, 4] float32`` (dy, dx, dh, dw) of fg anchors, zeros elsewhere.
      gt_indices: ``[B, N] int32`` matched GT index of fg anchors, -1 elsewhere.
    """

    gt_objectness: tf.Tensor
    gt_deltas: tf.Tensor
    gt_indices: tf.Tensor


class RoiTargets(NamedTuple):
    """Targets of :func:`sample_rois`; fg slots come first in every image.

    Attributes:
      rois: ``[B, S, 4] float32`` sampled boxes (pixels), zeros in invalid slots.
      valid: ``[B, S] bool``, slots holding a sampled RoI (losses should mask by it).
      gt_classes: ``[B, S] int32`` class of fg RoIs, 0 for bg and invalid slots.
      gt_deltas: ``[B, S, 4] float32`` box targets of fg RoIs, zeros elsewhere.
      gt_boxes: ``[B, S, 4] float32`` matched GT box of fg RoIs, zeros elsewhere.
      gt_indices: ``[B, S] int32`` matched GT index in ``[0, M)`` of fg RoIs (for mask
        targets), -1 elsewhere.
      num_positives: ``[B] int32`` fg slots (they are ``[:num_positives]``).
    """

    rois: tf.Tensor
    valid: tf.Tensor
    gt_classes: tf.Tensor
    gt_deltas: tf.Tensor
    gt_boxes: tf.Tensor
    gt_indices: tf.Tensor
    num_positives: tf.Tensor


def gt_valid_mask(gt_boxes, gt_classes=None) -> tf.Tensor:
    """Which padded GT rows are real instances.

    Args:
      gt_boxes: ``[..., M, 4]`` float, (ymin, xmin, ymax, xmax) in pixels.
      gt_classes: ``[..., M]`` int or None; padding is any class ``<= 0``.

    Returns:
      ``[..., M] bool``.
    """
    valid = box_ops.valid_box_mask(gt_boxes)
    if gt_classes is not None:
        valid = tf.logical_and(valid, tf.convert_to_tensor(gt_classes) > 0)
    return valid


def _append_dummy_gt(gt_boxes, gt_valid, gt_classes=None):
    """Adds one invalid GT per image so gathers work even when ``M = 0``."""
    batch = tf.shape(gt_boxes)[0]
    boxes = tf.concat([gt_boxes, tf.zeros([batch, 1, 4])], axis=1)
    valid = tf.concat([gt_valid, tf.zeros([batch, 1], tf.bool)], axis=1)
    if gt_classes is None:
        return boxes, valid
    return boxes, valid, tf.concat([gt_classes, tf.zeros([batch, 1], tf.int32)], axis=1)


def _fg_deltas(gt_boxes, boxes, is_fg, weights) -> tf.Tensor:
    """``[B, K, 4]`` deltas of fg rows, zeros (never NaN) elsewhere."""
    fg = is_fg[..., None]
    unit = tf.constant(_UNIT_BOX)
    deltas = box_ops.encode_boxes(tf.where(fg, gt_boxes, unit), tf.where(fg, boxes, unit), weights)
    return tf.where(fg, deltas, 0.0)


def assign_rpn_targets(anchors, gt_boxes, gt_valid=None, *, seed,
                       positive_threshold: float = 0.7, negative_threshold: float = 0.3,
                       num_samples: int = 256, positive_fraction: float = 0.5,
                       weights: Sequence[float] = RPN_WEIGHTS, fused: bool = True) -> RpnTargets:
    """Matches anchors to GT (with low-quality matches) and samples 256 per image.

    Args:
      anchors: ``[N, 4] float32`` all anchors, (ymin, xmin, ymax, xmax) in pixels.
      gt_boxes: ``[B, M, 4] float32`` padded GT boxes in pixels.
      gt_valid: ``[B, M] bool`` or None (defaults to non-empty boxes).
      seed: ``[2]`` int stateless seed of the sampler (required: vary it per step).
      positive_threshold: IoU ``>=`` this is fg (``rpn_positive_overlap``).
      negative_threshold: IoU ``<`` this is bg (``rpn_negative_overlap``).
      num_samples: anchors sampled per image (``rpn_batch_size_per_im``).
      positive_fraction: max fg share of the sample (``rpn_fg_fraction``).
      weights: delta weights; (1, 1, 1, 1) as in NVIDIA's code.
      fused: match with the fused custom op where it is built (:func:`matcher.match_boxes`).

    Returns:
      :class:`RpnTargets` (no gradient flows through them).
    """
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_valid = gt_valid_mask(gt_boxes) if gt_valid is None else tf.cast(gt_valid, tf.bool)
    gt_boxes, gt_valid = _append_dummy_gt(gt_boxes, gt_valid)
    anchors = tf.cast(anchors, tf.float32)[None]
    found = matcher.match_boxes(anchors, gt_boxes, positive_threshold, negative_threshold,
                                allow_low_quality=True, gt_valid=gt_valid, fused=fused)
    sample = sampler.sample_balanced(found.labels, num_samples, positive_fraction, seed)
    objectness = tf.where(sample.mask, found.labels, matcher.IGNORE)
    is_fg = tf.equal(objectness, matcher.FOREGROUND)
    matched = tf.gather(gt_boxes, found.matched_idx, batch_dims=1)
    deltas = _fg_deltas(matched, tf.broadcast_to(anchors, tf.shape(matched)), is_fg, weights)
    indices = tf.where(is_fg, found.matched_idx, -1)
    return RpnTargets(*(tf.stop_gradient(t) for t in (objectness, deltas, indices)))


def _roi_candidates(proposals, gt_boxes, gt_valid, proposals_valid, append_gt):
    """Proposals (plus GT boxes, as Detectron does) and which of them may be sampled."""
    if proposals_valid is None:
        proposals_valid = tf.ones(tf.shape(proposals)[:2], tf.bool)
    if not append_gt:
        return proposals, tf.cast(proposals_valid, tf.bool)
    return (tf.concat([proposals, gt_boxes], axis=1),
            tf.concat([tf.cast(proposals_valid, tf.bool), gt_valid], axis=1))


def _label_rois(candidates, candidates_valid, gt_boxes, gt_valid, fg_threshold,
                bg_threshold_hi, bg_threshold_lo, fused: bool) -> matcher.Match:
    """Fast R-CNN labels: fg IoU >= fg_threshold, bg IoU in [lo, hi), else -1."""
    found = matcher.match_boxes(candidates, gt_boxes, fg_threshold, bg_threshold_hi,
                                allow_low_quality=False, gt_valid=gt_valid, fused=fused)
    too_low = tf.logical_and(found.labels == matcher.BACKGROUND, found.max_iou < bg_threshold_lo)
    keep = tf.logical_and(candidates_valid, tf.logical_not(too_low))
    return found._replace(labels=tf.where(keep, found.labels, matcher.IGNORE))


def _gather_slots(sample, found, candidates, gt_boxes, gt_classes, weights) -> RoiTargets:
    """Gathers the sampled RoIs and their targets into ``[B, S]`` slots."""
    labels = tf.gather(found.labels, sample.indices, batch_dims=1)
    is_fg = tf.logical_and(sample.valid, tf.equal(labels, matcher.FOREGROUND))
    rois = tf.where(sample.valid[..., None], tf.gather(candidates, sample.indices, batch_dims=1), 0.0)
    gt_indices = tf.where(is_fg, tf.gather(found.matched_idx, sample.indices, batch_dims=1), -1)
    safe = tf.maximum(gt_indices, 0)
    matched = tf.where(is_fg[..., None], tf.gather(gt_boxes, safe, batch_dims=1), 0.0)
    classes = tf.where(is_fg, tf.gather(gt_classes, safe, batch_dims=1), 0)
    deltas = _fg_deltas(matched, rois, is_fg, weights)
    return RoiTargets(rois, sample.valid, classes, deltas, matched, gt_indices, sample.num_positives)


def sample_rois(proposals, gt_boxes, gt_classes, gt_valid=None, *, seed,
                proposals_valid=None, num_samples: int = 512, positive_fraction: float = 0.25,
                fg_threshold: float = 0.5, bg_threshold_hi: float = 0.5,
                bg_threshold_lo: float = 0.0, weights: Sequence[float] = box_ops.DEFAULT_WEIGHTS,
                append_gt: bool = True, fused: bool = True) -> RoiTargets:
    """Labels proposals against GT and samples 512 RoIs per image (25 % fg at most).

    Foreground is IoU ``>= fg_threshold`` (detectron2; NVIDIA's ``proposal_label_op``
    used ``>``, which differs only at exactly 0.5). Background slots get class 0.

    Args:
      proposals: ``[B, P, 4] float32`` RPN proposals in pixels.
      gt_boxes: ``[B, M, 4] float32`` padded GT boxes in pixels.
      gt_classes: ``[B, M] int`` GT classes (1..num_classes-1; padding ``<= 0``).
      gt_valid: ``[B, M] bool`` or None (defaults to :func:`gt_valid_mask`).
      seed: ``[2]`` int stateless seed of the sampler (required: vary it per step).
      proposals_valid: ``[B, P] bool`` or None (all valid), e.g. NMS padding.
      num_samples: RoIs per image (``batch_size_per_im``).
      positive_fraction: max fg share (``fg_fraction``).
      fg_threshold: fg if IoU ``>=`` this (``fg_thresh``).
      bg_threshold_hi: bg if IoU ``<`` this (``bg_thresh_hi``).
      bg_threshold_lo: bg if IoU ``>=`` this (``bg_thresh_lo``).
      weights: delta weights (``bbox_reg_weights`` = (10, 10, 5, 5)).
      append_gt: add the valid GT boxes to the candidates (Detectron, NVIDIA).
      fused: match with the fused custom op where it is built (:func:`matcher.match_boxes`).

    Returns:
      :class:`RoiTargets` (no gradient flows through them).
    """
    proposals = tf.cast(proposals, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_classes = tf.cast(gt_classes, tf.int32)
    gt_valid = gt_valid_mask(gt_boxes, gt_classes) if gt_valid is None else tf.cast(gt_valid, tf.bool)
    candidates, candidates_valid = _roi_candidates(proposals, gt_boxes, gt_valid, proposals_valid, append_gt)
    gt_boxes, gt_valid, gt_classes = _append_dummy_gt(gt_boxes, gt_valid, gt_classes)
    found = _label_rois(candidates, candidates_valid, gt_boxes, gt_valid, fg_threshold,
                        bg_threshold_hi, bg_threshold_lo, fused)
    sample = sampler.sample_balanced(found.labels, num_samples, positive_fraction, seed)
    targets = _gather_slots(sample, found, candidates, gt_boxes, gt_classes, weights)
    return RoiTargets(*(tf.stop_gradient(t) for t in targets))
