"""RPN proposals: per-level top-k, decode, clip, size filter, NMS, then top-k over levels.

Shape glossary
  B         images in the batch (static)
  L         pyramid levels of the RPN outputs (the keys of the input dicts)
  H_l, W_l  feature-map size at level ``l``
  A         anchors per location
  N_l       anchors of level ``l``: ``H_l * W_l * A`` (``(y, x, a)`` order, as anchors.py)
  k_l       candidates of level ``l`` kept before NMS: ``min(pre_nms_topk, N_l)``
  m_l       proposals of level ``l`` kept after NMS: ``min(post_nms_topk, k_l)``
  P         ``post_nms_topk``, proposals per image returned

Algorithm (NVIDIA / Detectron FPN: NMS per level, then top-k over the concatenation)
  For every image and level: take the ``k_l`` highest objectness logits, decode their
  deltas against the anchors (``box_ops.decode_boxes``, RPN weights (1, 1, 1, 1)),
  clip to the scaled image ``(image_info[:, 0], image_info[:, 1])``, mark boxes with
  height or width ``<= min_size`` invalid (with ``min_size=0`` that drops boxes that
  clipping made empty), run greedy NMS (suppress IoU ``> nms_threshold``) and keep at
  most ``m_l``. Then the ``P`` best survivors over all levels are returned, sorted by
  score, valid ones first.

Scores: ranking uses the logits (no ties from a saturated sigmoid); the returned
``scores`` are sigmoid probabilities. ``min_size`` is in pixels of the network input
(NVIDIA states it at the original image scale; its default, 0, is the same in both).

Implementations: by default the fused op ``custom_ops/proposals`` (one kernel per
image and level on the intra-op pool, CUDA where built) when
``custom_ops.loader.load("proposals")`` gives it; otherwise (``fused=False``: the model config's
``custom_ops``, ``MRCNN_NO_CUSTOM_OPS=1``, build failure) the plain-TF graph below. Both agree
within float tolerance (``tests/custom_ops/test_proposals_op.py``). The plain graph
runs NMS per image with ``tf.image.non_max_suppression`` (exact greedy, lower index
first on equal scores) under ``tf.map_fn``: eager, ``tf.function``; not XLA.
No gradient flows through the proposals.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Sequence

import tensorflow as tf

from custom_ops.proposals import ops as fused_ops
from mrcnn_tf2.ops import box_ops
from mrcnn_tf2.ops.targets import RPN_WEIGHTS

_NEG_INF = float("-inf")


class Proposals(NamedTuple):
    """Output of :func:`generate_proposals`; valid slots come first in every image.

    Attributes:
      boxes: ``[B, P, 4] float32`` (ymin, xmin, ymax, xmax) in pixels of the scaled
        image, zeros in padding slots.
      scores: ``[B, P] float32`` objectness probabilities (sigmoid of the logits),
        descending; 0 in padding slots.
      valid: ``[B, P] bool``, False for padding slots.
    """

    boxes: tf.Tensor
    scores: tf.Tensor
    valid: tf.Tensor


def _num_anchors(scores: tf.Tensor, anchors: tf.Tensor) -> int:
    """Static ``N_l`` of a level, from the anchors or else the score map."""
    if anchors.shape[0] is not None:
        return int(anchors.shape[0])
    height, width, num = scores.shape[1:]
    return int(height * width * num)


def _level_topk(scores, deltas, anchors, k: int):
    """Top-``k`` anchors of one level by logit.

    Args:
      scores: ``[B, H_l, W_l, A]`` logits.
      deltas: ``[B, H_l, W_l, 4 * A]`` (dy, dx, dh, dw) per anchor.
      anchors: ``[N_l, 4]`` anchors in pixels.
      k: ``k_l``.

    Returns:
      ``(logits [B, k] float32, deltas [B, k, 4] float32, anchors [B, k, 4] float32)``.
    """
    batch = tf.shape(scores)[0]
    logits = tf.reshape(tf.cast(scores, tf.float32), [batch, -1])
    deltas = tf.reshape(tf.cast(deltas, tf.float32), [batch, -1, 4])
    logits, indices = tf.math.top_k(logits, k=k, sorted=True)
    return (logits, tf.gather(deltas, indices, batch_dims=1),
            tf.gather(tf.cast(anchors, tf.float32), indices))


def _batched_nms(boxes, logits, max_output: int, iou_threshold: float) -> tf.Tensor:
    """Greedy NMS of each image; ``-inf`` logits are never kept.

    Args:
      boxes: ``[B, k, 4] float32`` pixels.
      logits: ``[B, k] float32`` scores, ``-inf`` for boxes to drop.
      max_output: ``m``, most boxes kept per image.
      iou_threshold: suppress a box whose IoU with a kept one is ``>`` this.

    Returns:
      ``[B, m] int32`` kept indices into ``k`` by descending score, ``-1`` padding.
    """
    def one_image(args):
        keep = tf.image.non_max_suppression(args[0], args[1], max_output, iou_threshold,
                                            score_threshold=_NEG_INF)
        keep = tf.pad(keep, [[0, max_output - tf.shape(keep)[0]]], constant_values=-1)
        return tf.ensure_shape(keep, [max_output])

    return tf.map_fn(one_image, (boxes, logits), fn_output_signature=tf.TensorSpec([max_output], tf.int32))


def _level_proposals(scores, deltas, anchors, image_hw, *, pre_nms_topk, post_nms_topk,
                     nms_threshold, min_size, weights):
    """Proposals of one level: ``(boxes [B, m_l, 4], logits [B, m_l])``, ``-inf`` padding."""
    k = min(pre_nms_topk, _num_anchors(scores, anchors))
    logits, deltas, anchors = _level_topk(scores, deltas, anchors, k)
    boxes = box_ops.clip_boxes(box_ops.decode_boxes(deltas, anchors, weights), image_hw)
    logits = tf.where(box_ops.valid_box_mask(boxes, min_size), logits, _NEG_INF)
    keep = _batched_nms(boxes, logits, min(post_nms_topk, k), nms_threshold)
    safe = tf.maximum(keep, 0)
    kept = keep >= 0
    return (tf.where(kept[..., None], tf.gather(boxes, safe, batch_dims=1), 0.0),
            tf.where(kept, tf.gather(logits, safe, batch_dims=1), _NEG_INF))


def _select_topk(boxes, logits, k: int) -> Proposals:
    """Best ``k`` of ``[B, n, 4]`` boxes / ``[B, n]`` logits (``-inf`` = invalid), padded."""
    pad = max(k - int(logits.shape[1]), 0)
    logits = tf.pad(logits, [[0, 0], [0, pad]], constant_values=_NEG_INF)
    boxes = tf.pad(boxes, [[0, 0], [0, pad], [0, 0]])
    logits, indices = tf.math.top_k(logits, k=k, sorted=True)
    valid = logits > _NEG_INF
    boxes = tf.where(valid[..., None], tf.gather(boxes, indices, batch_dims=1), 0.0)
    return Proposals(boxes, tf.where(valid, tf.sigmoid(logits), 0.0), valid)


def generate_proposals(rpn_scores: Dict[int, tf.Tensor], rpn_deltas: Dict[int, tf.Tensor],
                       anchors: Dict[int, tf.Tensor], image_info, *, pre_nms_topk: int = 2000,
                       post_nms_topk: int = 1000, nms_threshold: float = 0.7,
                       min_size: float = 0.0, weights: Sequence[float] = RPN_WEIGHTS, fused: bool = True) -> Proposals:
    """Multilevel RPN proposals (see the module docstring for the algorithm).

    Args:
      rpn_scores: ``{level: [B, H_l, W_l, A]}`` objectness logits (any float dtype).
      rpn_deltas: ``{level: [B, H_l, W_l, 4 * A]}`` box deltas (dy, dx, dh, dw) per anchor.
      anchors: ``{level: [N_l, 4] float32}`` from ``AnchorGenerator(...)(image_size)``.
      image_info: ``[B, 5]`` float (scaled_h, scaled_w, scale, orig_h, orig_w);
        boxes are clipped to ``(scaled_h, scaled_w)``.
      pre_nms_topk: candidates per level and image before NMS (capped at ``N_l``).
      post_nms_topk: ``P``, proposals per level after NMS and per image in the output.
      nms_threshold: IoU above which NMS suppresses the lower-scoring box.
      min_size: boxes with height or width ``<= min_size`` (network-input pixels) are dropped.
      weights: delta weights, (1, 1, 1, 1) for the RPN as in :mod:`targets`.
      fused: use the fused custom op where it is built (the model config's ``custom_ops``).

    Returns:
      :class:`Proposals` with ``P`` slots per image (no gradient flows through them).
    """
    if pre_nms_topk < 1 or post_nms_topk < 1:
        raise ValueError("Need pre_nms_topk >= 1 and post_nms_topk >= 1. Received: "
                         f"pre_nms_topk={pre_nms_topk}, post_nms_topk={post_nms_topk}")
    args = dict(pre_nms_topk=pre_nms_topk, post_nms_topk=post_nms_topk, nms_threshold=nms_threshold,
                min_size=min_size, weights=weights)
    result = fused_ops.generate_proposals(rpn_scores, rpn_deltas, anchors, image_info, **args) \
        if fused and rpn_scores else None
    if result is not None:
        return Proposals(*result)
    return plain_generate_proposals(rpn_scores, rpn_deltas, anchors, image_info, **args)


def plain_generate_proposals(rpn_scores, rpn_deltas, anchors, image_info, *, pre_nms_topk: int,
                             post_nms_topk: int, nms_threshold: float, min_size: float,
                             weights: Sequence[float]) -> Proposals:
    """The plain-TF implementation of :func:`generate_proposals` (same arguments)."""
    image_hw = tf.cast(image_info, tf.float32)[:, None, :2]  # [B, 1, 2]
    boxes, logits = [], []
    for level in sorted(rpn_scores):
        level_boxes, level_logits = _level_proposals(
            tf.stop_gradient(rpn_scores[level]), tf.stop_gradient(rpn_deltas[level]), anchors[level],
            image_hw, pre_nms_topk=pre_nms_topk, post_nms_topk=post_nms_topk,
            nms_threshold=nms_threshold, min_size=min_size, weights=weights)
        boxes.append(level_boxes)
        logits.append(level_logits)
    proposals = _select_topk(tf.concat(boxes, 1), tf.concat(logits, 1), post_nms_topk)
    return Proposals(*(tf.stop_gradient(t) for t in proposals))
