"""Python wrapper of ``MrcnnGenerateProposals`` (see ``proposals.cc``).

:func:`generate_proposals` returns ``None`` when the op library is unavailable
(``custom_ops.loader.load`` returned ``None``); the caller, ``mrcnn_tf2.ops.proposals``,
then runs its plain-TF graph. The op matches that graph within float tolerance.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import tensorflow as tf

from custom_ops import loader

OP_NAME = "MrcnnGenerateProposals"
tf.no_gradient(OP_NAME)


def _library():
    """The loaded op module, or ``None``."""
    return loader.load("proposals")


def available() -> bool:
    """Whether the fused op can be used in this process."""
    return _library() is not None


def generate_proposals(rpn_scores: Dict[int, tf.Tensor], rpn_deltas: Dict[int, tf.Tensor],
                       anchors: Dict[int, tf.Tensor], image_info, *, pre_nms_topk: int,
                       post_nms_topk: int, nms_threshold: float, min_size: float,
                       weights: Sequence[float]) -> Optional[Tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """Fused multilevel proposals, or ``None`` without the op library.

    Args:
      rpn_scores: ``{level: [B, H_l, W_l, A]}`` logits (any float dtype).
      rpn_deltas: ``{level: [B, H_l, W_l, 4 * A]}`` (dy, dx, dh, dw).
      anchors: ``{level: [H_l * W_l * A, 4]}`` pixels.
      image_info: ``[B, >= 2]`` float (scaled_h, scaled_w, ...).
      pre_nms_topk, post_nms_topk, nms_threshold, min_size, weights: as
        ``mrcnn_tf2.ops.proposals.generate_proposals``.

    Returns:
      ``(boxes [B, P, 4] float32, scores [B, P] float32, valid [B, P] bool)`` or ``None``.
    """
    library = _library()
    if library is None:
        return None
    levels = sorted(rpn_scores)
    as_f32 = lambda t: tf.cast(tf.stop_gradient(t), tf.float32)  # noqa: E731
    boxes, scores, valid = library.mrcnn_generate_proposals(
        rpn_scores=[as_f32(rpn_scores[l]) for l in levels],
        rpn_deltas=[as_f32(rpn_deltas[l]) for l in levels],
        anchors=[as_f32(anchors[l]) for l in levels], image_info=as_f32(image_info),
        pre_nms_topk=int(pre_nms_topk), post_nms_topk=int(post_nms_topk),
        nms_threshold=float(nms_threshold), min_size=float(min_size),
        weights=[float(w) for w in weights])
    return boxes, scores, valid
