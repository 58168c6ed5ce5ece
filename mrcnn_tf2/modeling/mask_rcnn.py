"""Mask R-CNN meta-architecture: wires backbone, FPN, RPN, sampler, ROIAlign and heads.

Shape glossary
  B         images in the batch
  H, W      network input size, static, multiples of ``2**max_level`` (64)
  M         GT instances per image (padded; padding rows have class ``<= 0``)
  G         GT mask side (112)
  L         pyramid levels 2..6; H_l, W_l their sizes; A anchors per location (3)
  N         anchors of an image, all levels
  P         proposals per image (``rpn.post_nms_topk_*``)
  S         sampled RoIs per image (``roi_sampler.batch_size_per_image``, 512)
  S_fg      leading RoI slots given to the mask head, ``int(S * positive_fraction)`` (128)
  K         classes including background (91); D detections per image (100)

Inputs (``call(inputs, training)``)
  ``images [B, H, W, 3] float32`` normalised; ``image_info [B, 5] float32`` (scaled_h,
  scaled_w, scale, orig_h, orig_w). Training also needs ``gt_boxes [B, M, 4] float32``
  (pixels of the scaled image), ``gt_classes [B, M] int32`` (-1 padding) and ``gt_masks
  [B, M, G, G] float32`` (each mask cropped to its box).

Outputs: predictions and, in training, the targets they are scored against. Losses are
computed by ``mrcnn_tf2.losses`` in the task, never here. The mask loss uses the
leading ``S_fg`` slots of ``roi_targets`` (``gt_classes[:, :S_fg]``, ``valid[:, :S_fg]``).

The RoI and anchor samplers draw a fresh stateless seed each training step from a
``tf.random.Generator`` owned by the model (checkpointed with it).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from backbones.build import build_backbone
from mrcnn_tf2.config import MaskRCNNConfig
from mrcnn_tf2.modeling.fpn import Fpn
from mrcnn_tf2.modeling.heads import BoxHead, MaskHead, RpnHead
from mrcnn_tf2.ops import roi_align, targets
from mrcnn_tf2.ops.anchors import AnchorGenerator, concat_levels
from mrcnn_tf2.ops.detections import generate_detections
from mrcnn_tf2.ops.mask_targets import mask_targets
from mrcnn_tf2.ops.proposals import Proposals, generate_proposals

BACKBONE_MAX_LEVEL = 5  # C5; higher pyramid levels are pooled from P5


TRAINING_KEYS = ("gt_boxes", "gt_classes", "gt_masks")
#: the samplers' seeds in ``call(with_targets=True)``: the same RoIs at every validation, so its losses compare.
VALIDATION_SEEDS = ((1, 2), (3, 4))


@functools.lru_cache(maxsize=32)
def _anchor_arrays(generator: AnchorGenerator, image_size: Tuple[int, int]) -> Dict[int, np.ndarray]:
    """``{level: [H_l * W_l * A, 4] float32 numpy}``, computed once per image size."""
    return {level: generator.level_anchors(image_size, level) for level in generator.levels}


@keras.utils.register_keras_serializable(package="mrcnn_tf2")
class MaskRCNN(keras.Model):
    """Mask R-CNN with an FPN on any backbone (:mod:`backbones`), built from a :class:`MaskRCNNConfig`.

    Args:
      config: the model configuration (only model fields are read).
      seed: seed of the sampling generator; None draws a non-deterministic one.

    Training ``call`` returns::

      rpn_scores    {l: [B, H_l, W_l, A] float32}      objectness logits
      rpn_deltas    {l: [B, H_l, W_l, 4A] float32}     anchor deltas
      rpn_targets   targets.RpnTargets over the N anchors (levels concatenated)
      roi_targets   targets.RoiTargets of the S sampled RoIs (fg first)
      class_logits  [B, S, K] float32
      box_deltas    [B, S, 4K] float32                 class-specific (dy, dx, dh, dw)
      mask_logits   [B, S_fg, 28, 28, K] float32
      mask_targets  [B, S_fg, 28, 28] float32 in {0, 1}

    Inference ``call`` returns::

      num_detections     [B] int32
      detection_boxes    [B, D, 4] float32   pixels of the scaled input image
      detection_classes  [B, D] int32        1..K-1, 0 in padding
      detection_scores   [B, D] float32      descending, 0 in padding
      detection_masks    [B, D, 28, 28] float32 probabilities of the detected class
    """

    def __init__(self, config: MaskRCNNConfig, seed: Optional[int] = None, name: str = "mask_rcnn", **kwargs):
        super().__init__(name=name, **kwargs)
        self.config, self.seed = config, seed
        a = config.anchors
        self.anchor_generator = AnchorGenerator(**dataclasses.asdict(a))
        self.backbone = build_backbone(config.backbone, name=config.backbone.kind)
        self.fpn = Fpn(a.min_level, a.max_level, BACKBONE_MAX_LEVEL, config.fpn.channels, name="fpn")
        self.rpn_head = RpnHead(a.anchors_per_location, config.rpn.channels, name="rpn_head")
        self.box_head = BoxHead(config.num_classes, config.box_head.fc_dims, config.box_head.num_fcs,
                                name="box_head")
        self.mask_head = MaskHead(config.num_classes, config.mask_head.num_convs, config.mask_head.channels,
                                  name="mask_head")
        self.sampling_generator = (tf.random.Generator.from_non_deterministic_state() if seed is None
                                   else tf.random.Generator.from_seed(seed))

    def call(self, inputs: Dict[str, tf.Tensor], training: bool = False, mask_logits: bool = False,
             custom_ops: Optional[bool] = None, with_targets: bool = False) -> Dict[str, object]:
        """Backbone -> FPN -> RPN -> proposals -> [targets] -> ROIAlign -> heads (see class doc).

        ``mask_logits`` (inference): return ``detection_mask_logits [B, D, 28, 28]`` (the detected
        class's logits, 0 in padding) instead of ``detection_masks`` (for exports that paste elsewhere).
        ``custom_ops``: the fused kernels for this call (None: ``config.custom_ops``; exports trace with
        False so their graphs load without the op libraries).
        ``with_targets`` (inference, with the training inputs' ground truth): also return the training
        outputs of the same features, sampled from the inference proposals with fixed seeds (the generator is
        not advanced), so the training losses can be computed on validation data.
        """
        fused = self.config.custom_ops if custom_ops is None else custom_ops
        features = self.fpn(self.backbone(inputs["images"], training=training))
        rpn_scores, rpn_deltas = self.rpn_head(features)
        anchors = self.anchors(inputs["images"])
        proposals = generate_proposals(rpn_scores, rpn_deltas, anchors, inputs["image_info"],
                                       **self.config.rpn.proposal_args(training), fused=fused)
        if training:
            return self._training_outputs(features, rpn_scores, rpn_deltas, anchors, proposals, inputs, fused)
        detections = self._detect(features, proposals, inputs["image_info"], mask_logits, fused)
        if not with_targets:
            return detections
        seeds = tf.constant(VALIDATION_SEEDS, tf.int64)
        return {**detections, **self._training_outputs(features, rpn_scores, rpn_deltas, anchors, proposals, inputs,
                                                       fused, seeds)}

    def _training_outputs(self, features, rpn_scores, rpn_deltas, anchors, proposals: Proposals, inputs,
                          fused: bool, seeds: Optional[tf.Tensor] = None) -> Dict[str, object]:
        """Targets, box-head and mask-head outputs of the sampled RoIs (the training outputs, class doc)."""
        rpn_targets, roi_targets = self._sample_targets(anchors, proposals, inputs, fused, seeds)
        class_logits, box_deltas = self.box_head(self._roi_features(features, roi_targets.rois, False, fused))
        fg_rois = roi_targets.rois[:, :self.num_mask_slots]
        fg_gt_indices = roi_targets.gt_indices[:, :self.num_mask_slots]
        is_fg = tf.logical_and(roi_targets.gt_classes[:, :self.num_mask_slots] > 0,
                               roi_targets.valid[:, :self.num_mask_slots])
        mask_logits = self._mask_logits(features, fg_rois, is_fg, fused)
        gt_masks = mask_targets(inputs["gt_masks"], inputs["gt_boxes"], fg_rois, fg_gt_indices,
                                output_size=self.config.mask_head.resolution)
        return {"rpn_scores": rpn_scores, "rpn_deltas": rpn_deltas, "rpn_targets": rpn_targets,
                "roi_targets": roi_targets, "class_logits": class_logits, "box_deltas": box_deltas,
                "mask_logits": mask_logits, "mask_targets": gt_masks}

    @property
    def num_mask_slots(self) -> int:
        """``S_fg``: leading RoI slots given to the mask head in training."""
        return min(self.config.roi_sampler.num_fg_slots, self.config.roi_sampler.batch_size_per_image)

    def anchors(self, images: tf.Tensor) -> Dict[int, tf.Tensor]:
        """``{level: [H_l * W_l * A, 4] float32}`` for the static size of ``images [B, H, W, 3]``."""
        height, width = images.shape[1:3]
        if height is None or width is None:
            raise ValueError(f"MaskRCNN needs a static image size. Received: images.shape={images.shape}")
        return {level: tf.constant(a) for level, a in _anchor_arrays(self.anchor_generator, (height, width)).items()}

    def _sample_targets(self, anchors, proposals: Proposals, inputs, fused: bool = True,
                        seeds: Optional[tf.Tensor] = None) -> Tuple[targets.RpnTargets, targets.RoiTargets]:
        """RPN anchor targets and the Fast R-CNN RoI sample, with fresh per-step seeds (or ``seeds [2, 2]``)."""
        missing = [key for key in TRAINING_KEYS if key not in inputs]
        if missing:
            raise KeyError(f"Training inputs lack {missing}. Received keys: {sorted(inputs)}")
        gt_boxes, gt_classes = inputs["gt_boxes"], inputs["gt_classes"]
        gt_valid = targets.gt_valid_mask(gt_boxes, gt_classes)
        seeds = self.sampling_generator.make_seeds(2) if seeds is None else seeds
        rpn_seed, roi_seed = tf.unstack(seeds, axis=1)
        rpn, sampler = self.config.rpn, self.config.roi_sampler
        rpn_targets = targets.assign_rpn_targets(
            concat_levels(anchors), gt_boxes, gt_valid, seed=rpn_seed,
            positive_threshold=rpn.positive_threshold, negative_threshold=rpn.negative_threshold,
            num_samples=rpn.batch_size_per_image, positive_fraction=rpn.positive_fraction, fused=fused)
        roi_targets = targets.sample_rois(
            proposals.boxes, gt_boxes, gt_classes, gt_valid, seed=roi_seed, proposals_valid=proposals.valid,
            num_samples=sampler.batch_size_per_image, positive_fraction=sampler.positive_fraction,
            fg_threshold=sampler.fg_threshold, bg_threshold_hi=sampler.bg_threshold_hi,
            bg_threshold_lo=sampler.bg_threshold_lo, weights=self.config.box_head.bbox_reg_weights,
            append_gt=sampler.append_gt, fused=fused)
        return rpn_targets, roi_targets

    def _roi_features(self, features: Dict[int, tf.Tensor], boxes: tf.Tensor, mask: bool,
                      fused: bool = True) -> tf.Tensor:
        """ROIAlign on P2..P5: ``[B, n, 4]`` pixels -> ``[B, n, R, R, F]`` (R = 14 mask, 7 box)."""
        cfg = self.config.roi_align
        size = cfg.mask_output_size if mask else cfg.box_output_size
        crops = roi_align.multilevel_roi_align(
            features, boxes, output_size=size, sampling_ratio=cfg.sampling_ratio, aligned=cfg.aligned,
            min_level=self.config.anchors.min_level, max_level=BACKBONE_MAX_LEVEL, fused=fused)
        return tf.ensure_shape(crops, [None, None, size, size, self.config.fpn.channels])

    def _detect(self, features, proposals: Proposals, image_info, mask_logits: bool,
                fused: bool) -> Dict[str, tf.Tensor]:
        """Inference: box head on the valid proposals, detections, mask head on the real detections.

        Work is proportional to what is found: the box head sees the first ``max_b valid_b`` proposal
        slots (valid ones come first), the mask head the first ``max_b num_detections_b`` detection
        slots; the outputs keep their fixed ``[B, max_detections, ...]`` shapes (padding as before).
        """
        count = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(proposals.valid, tf.int32), axis=1)), 1)  # convs need >= 1 RoI
        rois, rois_valid = proposals.boxes[:, :count], proposals.valid[:, :count]
        class_logits, box_deltas = self.box_head(self._roi_features(features, rois, False, fused))
        det = self.config.detection
        detections = generate_detections(
            class_logits, box_deltas, rois, image_info, rois_valid=rois_valid,
            max_detections=det.max_detections, nms_threshold=det.nms_threshold,
            score_threshold=det.score_threshold, weights=self.config.box_head.bbox_reg_weights,
            pre_nms_topk_per_class=self.config.rpn.post_nms_topk_test, min_size=det.min_size)
        logits = self._detection_mask_logits(features, detections, fused)
        if mask_logits:
            return {**detections, "detection_mask_logits": logits}
        is_detection = tf.range(det.max_detections)[None] < detections["num_detections"][:, None]
        return {**detections, "detection_masks": tf.where(is_detection[:, :, None, None], tf.sigmoid(logits), 0.0)}

    def _detection_mask_logits(self, features, detections, fused: bool) -> tf.Tensor:
        """``[B, D, 28, 28]`` mask logits of the detected classes (0 in padding slots), the mask head
        run on the real detections only."""
        slots = self.config.detection.max_detections
        num = detections["num_detections"]
        count = tf.maximum(tf.reduce_max(num), 1)  # RoIAlign needs >= 1 slot
        boxes, classes = detections["detection_boxes"][:, :count], detections["detection_classes"][:, :count]
        is_detection = tf.range(count)[None] < num[:, None]
        mask_logits = self._mask_logits(features, boxes, is_detection, fused)  # [B, n, 28, 28, C]
        # A one-hot sum, not gather(axis=-1, batch_dims=2): tf2onnx turns that gather into an invalid
        # Transpose; exact, as the other terms are 0.
        one_hot = tf.one_hot(classes, tf.shape(mask_logits)[-1], dtype=mask_logits.dtype)  # [B, n, C]
        picked = tf.reduce_sum(mask_logits * one_hot[:, :, None, None, :], axis=-1)  # [B, n, 28, 28]
        picked = tf.pad(tf.where(is_detection[:, :, None, None], picked, 0.0), [[0, 0], [0, slots - count], [0, 0], [0, 0]])
        return tf.ensure_shape(picked, [None, slots, None, None])

    def _mask_logits(self, features, boxes: tf.Tensor, is_real: tf.Tensor, fused: bool = True) -> tf.Tensor:
        """Mask-head logits ``[B, n, 28, 28, C]`` of ``boxes [B, n, 4]``; 0 where ``is_real [B, n]`` is False.

        The head (4 convs at 14x14, the step's largest cost) runs on the ``N = count(is_real)`` real slots
        gathered across the batch, not on ``B x n`` padded ones; per RoI it computes what it would on all.
        """
        crops = self._roi_features(features, boxes, True, fused)  # [B, n, 14, 14, F]
        where = tf.where(is_real)  # [N, 2]
        count = tf.shape(where)[0]
        # A conv on 0 RoIs fails on CPU: with none (also an empty replica batch), one zero crop runs and is dropped.
        real = tf.concat([tf.gather_nd(crops, where), tf.zeros([1, *crops.shape[2:]], crops.dtype)], axis=0)
        logits = self.mask_head(real[None, :tf.maximum(count, 1)])[0, :count]  # [N, 28, 28, C]
        shape = tf.concat([tf.shape(boxes, out_type=where.dtype)[:2], tf.shape(logits, out_type=where.dtype)[1:]], 0)
        return tf.scatter_nd(where, logits, shape)

    def get_config(self):
        """``{"config": nested dict, "seed": ...}``; round-trips through ``from_config``."""
        return {"config": self.config.to_dict(), "seed": self.seed, "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Inverse of :meth:`get_config`."""
        del custom_objects
        return cls(MaskRCNNConfig.from_dict(config["config"]), seed=config.get("seed"), name=config.get("name"))


def build_mask_rcnn(config: MaskRCNNConfig = MaskRCNNConfig(), seed: Optional[int] = None) -> MaskRCNN:
    """A :class:`MaskRCNN` for ``config`` (weights are created on the first call)."""
    return MaskRCNN(config, seed=seed)
