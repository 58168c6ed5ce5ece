"""Mask R-CNN configuration: one small frozen dataclass per component.

The defaults are NVIDIA's TF2 recipe (``mrcnn_tf2/config.py`` and ``arguments.py`` of
DeepLearningExamples): ResNet-50 FPN, anchors on P2..P6, 512 RoIs per image, 100
detections. Every component config is nested in :class:`MaskRCNNConfig`; command-line
flags override nested fields last, by dotted name::

    config = MaskRCNNConfig().override(**{"rpn.pre_nms_topk_train": 1000, "num_classes": 2})
    config = replace_flat(config, parse_overrides(["roi_sampler.batch_size_per_image=256"]))

Models receive the component configs (or explicit arguments taken from them); no model
reads a training field such as the batch size.

Deliberate differences from NVIDIA's values are marked "deviation" below.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Tuple

from backbones.configs import BackboneConfig, ResNetConfig
from common.command.config import check as _check
from common.command.config import DictConfig, flatten, parse_overrides, replace_flat  # noqa: F401  (config API)

ASPECT_RATIOS = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))
DEFAULT_IMAGE_SIZE = (832, 1344)  # NVIDIA's network input (short side, long side max)
COCO_NUM_CLASSES = 91  # COCO category ids 1..90 plus background


@dataclasses.dataclass(frozen=True)
class AnchorConfig:
    """Multilevel anchors (see :class:`mrcnn_tf2.ops.anchors.AnchorGenerator`).

    Attributes:
      min_level: lowest pyramid level (P2, stride 4).
      max_level: highest pyramid level (P6, stride 64).
      num_scales: octave scales per level.
      aspect_ratios: ``(w, h)`` multiplier pairs.
      anchor_scale: anchor side in units of the level stride (8 -> 32..512 px).
      offset: anchor centres at ``stride * (i + offset)``: 0.5 (NVIDIA, cell centres), 0 (torchvision,
        ``shifts = arange(W_l) * stride``).
      round_half_sizes: round the anchors' half width and height to integers (torchvision's
        ``base_anchors.round()``).
      stride_from_sizes: the stride of a level is ``image size // feature size`` per axis
        (torchvision: 61 x 62 px on P6 of an 800 x 1184 input) instead of ``2**level``.
    """

    min_level: int = 2
    max_level: int = 6
    num_scales: int = 1
    aspect_ratios: Tuple[Tuple[float, float], ...] = ASPECT_RATIOS
    anchor_scale: float = 8.0
    offset: float = 0.5
    round_half_sizes: bool = False
    stride_from_sizes: bool = False

    def __post_init__(self):
        _check(0 <= self.min_level <= self.max_level,
               f"Need 0 <= min_level <= max_level. Received: min_level={self.min_level}, max_level={self.max_level}")
        _check(self.num_scales >= 1 and self.anchor_scale > 0, "Need num_scales >= 1 and anchor_scale > 0. "
               f"Received: num_scales={self.num_scales}, anchor_scale={self.anchor_scale}")
        _check(bool(self.aspect_ratios) and all(len(r) == 2 and min(r) > 0 for r in self.aspect_ratios),
               f"aspect_ratios must be non-empty positive (w, h) pairs. Received: aspect_ratios={self.aspect_ratios}")
        object.__setattr__(self, "aspect_ratios", tuple(tuple(map(float, r)) for r in self.aspect_ratios))

    @property
    def levels(self) -> range:
        """``min_level..max_level`` inclusive."""
        return range(self.min_level, self.max_level + 1)

    @property
    def anchors_per_location(self) -> int:
        """``A = num_scales * len(aspect_ratios)`` (3)."""
        return self.num_scales * len(self.aspect_ratios)


#: The backbone fields of torchvision's ResNet (v1.5: stride on the 3x3 conv; BatchNorm eps 1e-5;
#: PyTorch's symmetric padding of the strided 3x3 convs), for its ImageNet / COCO weights.
TORCHVISION_BACKBONE = {"stride_in_1x1": False, "bn_epsilon": 1e-5, "padding": "symmetric"}

#: torchvision's ``AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)``:
#: ratio ``h / w`` r gives the pair ``(1 / sqrt(r), sqrt(r))``, in the order 0.5 (wide), 1, 2 (tall).
TORCHVISION_ANCHORS = {"aspect_ratios": tuple((1.0 / r ** 0.5, r ** 0.5) for r in (0.5, 1.0, 2.0)),
                       "anchor_scale": 8.0, "offset": 0.0, "round_half_sizes": True, "stride_from_sizes": True}

#: torchvision's proposal and detection post-processing: proposals with a side < 1e-3 px dropped,
#: detections need probability > 0.05 and a side >= 0.01 px (``RegionProposalNetwork`` / ``RoIHeads``
#: defaults), masks pasted by its ``paste_masks_in_image``.
TORCHVISION_FILTERS = {"rpn.min_size": 1e-3, "detection.score_threshold": 0.05, "detection.min_size": 1e-2,
                       "detection.mask_paste": "torchvision"}

#: torchvision's ``GeneralizedRCNNTransform(800, 1333, ...)`` as :class:`mrcnn_tf2.data.inputs.InputConfig`
#: fields: short side 800 / long side <= 1333, sizes floored, boxes scaled back per axis, each image
#: padded to its own multiple of 32 (``size_divisible=32``).
TORCHVISION_INPUT = {"image_size": (800, 1333), "pad_multiple": 32, "size_rounding": "floor",
                     "box_scaling": "per_axis", "per_image_canvas": True}

#: ``--preset``: ``nvidia`` (NVIDIA's TF2 recipe, the defaults) or ``torchvision`` (its
#: ``maskrcnn_resnet50_fpn``: backbone layout, anchors, filters and input transform above).
PRESETS = ("nvidia", "torchvision")


def preset_model_fields(preset: str) -> dict:
    """Dotted :class:`MaskRCNNConfig` fields of ``preset`` (``{}`` for ``nvidia``, the defaults)."""
    _check(preset in PRESETS, f"preset must be one of {PRESETS}. Received: {preset!r}")
    if preset == "nvidia":
        return {}
    return {**{f"backbone.{k}": v for k, v in TORCHVISION_BACKBONE.items()},
            **{f"anchors.{k}": v for k, v in TORCHVISION_ANCHORS.items()}, **TORCHVISION_FILTERS}


#: ``--augmentation`` presets of Mask R-CNN training -> InputConfig fields (``flip`` is NVIDIA's recipe, unchanged).
AUGMENTATIONS = {
    "flip": {},
    "none": {"flip": False},
    "ssj": {"scale_jitter": (0.8, 1.25)},  # standard scale jitter
    "lsj": {"scale_jitter": (0.1, 2.0)},  # large-scale jitter (torchvision's --data-augmentation lsj range)
    "multiscale": {"scale_choices": (0.8, 0.85, 0.9, 0.95, 1.0)},  # short side x these (detectron2's 640-800 of 800)
}


def preset_input_fields(preset: str) -> dict:
    """:class:`mrcnn_tf2.data.inputs.InputConfig` fields of ``preset`` (``{}`` for ``nvidia``)."""
    _check(preset in PRESETS, f"preset must be one of {PRESETS}. Received: {preset!r}")
    return dict(TORCHVISION_INPUT) if preset == "torchvision" else {}


@dataclasses.dataclass(frozen=True)
class FpnConfig:
    """Feature pyramid: 1x1 laterals, nearest top-down, 3x3 outputs, P6 = subsampled P5.

    Attributes:
      channels: channels of every pyramid level.
    """

    channels: int = 256


@dataclasses.dataclass(frozen=True)
class RpnConfig:
    """RPN head, anchor targets and proposal generation.

    Attributes:
      channels: channels of the shared 3x3 conv.
      positive_threshold: anchor IoU ``>=`` this is fg (``rpn_positive_overlap``).
      negative_threshold: anchor IoU ``<`` this is bg (``rpn_negative_overlap``).
      batch_size_per_image: anchors sampled per image (``rpn_batch_size_per_im``).
      positive_fraction: max fg share of them (``rpn_fg_fraction``).
      pre_nms_topk_train: top-scoring boxes kept per level before NMS, training.
      post_nms_topk_train: proposals kept per image after NMS, training.
      nms_threshold_train: NMS IoU threshold, training.
      pre_nms_topk_test / post_nms_topk_test / nms_threshold_test: same at inference.
      min_size: proposals with a side ``<=`` this (pixels) are dropped (``rpn_min_size``).
    """

    channels: int = 256
    positive_threshold: float = 0.7
    negative_threshold: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    pre_nms_topk_train: int = 2000
    post_nms_topk_train: int = 1000
    nms_threshold_train: float = 0.7
    pre_nms_topk_test: int = 1000
    post_nms_topk_test: int = 1000
    nms_threshold_test: float = 0.7
    min_size: float = 0.0

    def proposal_args(self, training: bool) -> Dict[str, Any]:
        """Keyword arguments of ``ops.proposals.generate_proposals`` for a mode."""
        mode = "train" if training else "test"
        return {"pre_nms_topk": getattr(self, f"pre_nms_topk_{mode}"),
                "post_nms_topk": getattr(self, f"post_nms_topk_{mode}"),
                "nms_threshold": getattr(self, f"nms_threshold_{mode}"),
                "min_size": self.min_size}


@dataclasses.dataclass(frozen=True)
class RoiSamplerConfig:
    """Fast R-CNN RoI sampling (``ops.targets.sample_rois``).

    Attributes:
      batch_size_per_image: RoIs per image (``batch_size_per_im``).
      positive_fraction: max fg share (``fg_fraction``).
      fg_threshold: fg if IoU ``>=`` this (``fg_thresh``).
      bg_threshold_hi: bg if IoU ``<`` this (``bg_thresh_hi``).
      bg_threshold_lo: bg if IoU ``>=`` this (``bg_thresh_lo``).
      append_gt: add GT boxes to the proposals before sampling (Detectron, NVIDIA).
    """

    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    fg_threshold: float = 0.5
    bg_threshold_hi: float = 0.5
    bg_threshold_lo: float = 0.0
    append_gt: bool = True

    def __post_init__(self):
        _check(self.batch_size_per_image >= 1 and 0.0 < self.positive_fraction <= 1.0,
               "Need batch_size_per_image >= 1 and 0 < positive_fraction <= 1. Received: "
               f"{self.batch_size_per_image}, {self.positive_fraction}")

    @property
    def num_fg_slots(self) -> int:
        """``S_fg = int(batch_size_per_image * positive_fraction)``: mask-head slots (128)."""
        return int(self.batch_size_per_image * self.positive_fraction)


@dataclasses.dataclass(frozen=True)
class RoiAlignConfig:
    """Multilevel ROIAlign (``ops.roi_align.multilevel_roi_align``).

    Attributes:
      box_output_size: bins per side for the box head.
      mask_output_size: bins per side for the mask head.
      sampling_ratio: samples per bin side.
      aligned: half-pixel offset (detectron2 ``ROIAlignV2``); False matches NVIDIA's
        legacy geometry.
    """

    box_output_size: int = 7
    mask_output_size: int = 14
    sampling_ratio: int = 2
    aligned: bool = False


@dataclasses.dataclass(frozen=True)
class BoxHeadConfig:
    """Fast R-CNN head: ``num_fcs`` x FC-``fc_dims`` then class and class-specific boxes.

    Attributes:
      fc_dims: hidden width (``fast_rcnn_mlp_head_dim``).
      num_fcs: hidden layers.
      bbox_reg_weights: ``(wy, wx, wh, ww)`` delta weights.
    """

    fc_dims: int = 1024
    num_fcs: int = 2
    bbox_reg_weights: Tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)


@dataclasses.dataclass(frozen=True)
class MaskHeadConfig:
    """Mask head: ``num_convs`` x conv3x3, 2x deconv, per-class 1x1 logits.

    Attributes:
      num_convs: 3x3 convs on the ROIAlign features.
      channels: their width.
      resolution: output mask side (``mrcnn_resolution``), twice the mask ROIAlign size.
    """

    num_convs: int = 4
    channels: int = 256
    resolution: int = 28


@dataclasses.dataclass(frozen=True)
class DetectionConfig:
    """Inference post-processing (``ops.detections.generate_detections``).

    Attributes:
      max_detections: detections per image (``test_detections_per_image``).
      nms_threshold: class-wise NMS IoU (``test_nms``).
      score_threshold: minimum class probability. NVIDIA's GPU path uses 0.0
        (``combined_non_max_suppression(score_threshold=0.0)``); Detectron uses 0.05.
      min_size: boxes with a side below this (pixels) are dropped before NMS (torchvision 0.01).
      mask_paste: how 28x28 masks are pasted into the image: ``continuous`` (bilinear in continuous
        coordinates, detectron2's) or ``torchvision`` (its ``paste_masks_in_image``: padded mask,
        integer box), see :mod:`mrcnn_tf2.ops.paste_masks`.
    """

    max_detections: int = 100
    nms_threshold: float = 0.5
    score_threshold: float = 0.0
    min_size: float = 0.0
    mask_paste: str = "continuous"

    def __post_init__(self):
        _check(self.mask_paste in ("continuous", "torchvision"),
               f"detection.mask_paste must be continuous or torchvision. Received: {self.mask_paste!r}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss weights (applied by the task, never inside the model).

    Attributes:
      rpn_score_weight / rpn_box_weight: RPN objectness and box losses.
      fast_rcnn_class_weight / fast_rcnn_box_weight: box-head losses.
      mask_weight: mask loss (``mrcnn_weight_loss_mask``).

    L2 weight decay is the trainer's (``trainer.weight_decay``, ``--weight-decay``).
    """

    rpn_score_weight: float = 1.0
    rpn_box_weight: float = 1.0
    fast_rcnn_class_weight: float = 1.0
    fast_rcnn_box_weight: float = 1.0
    mask_weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class MaskRCNNConfig(DictConfig):
    """The whole Mask R-CNN model and its targets/post-processing.

    Attributes:
      num_classes: classes including background (COCO: 91 category ids incl. 0).
      image_size: ``(H, W)`` network input (padded) size, multiples of 32 (C5's stride).
      custom_ops: the fused C++/CUDA kernels of :mod:`custom_ops` (proposals, box matching, ROIAlign)
        where they are built; plain-TF ops when False (``--no-custom-ops``).
      backbone: any backbone of :mod:`backbones` (a tagged union; NVIDIA's: ResNet-50 v1 layout,
        stem and res2 frozen, BatchNorm frozen). Deviation: ``stride_in_1x1=True`` (v1) by default
        because the backbone checkpoint loaded here is Keras' ImageNet ResNet-50, trained that way.
      anchors, fpn, rpn, roi_sampler, roi_align, box_head, mask_head, detection, losses: component configs.
    """

    num_classes: int = COCO_NUM_CLASSES
    image_size: Tuple[int, int] = DEFAULT_IMAGE_SIZE
    custom_ops: bool = True
    anchors: AnchorConfig = AnchorConfig()
    backbone: BackboneConfig = ResNetConfig()
    fpn: FpnConfig = FpnConfig()
    rpn: RpnConfig = RpnConfig()
    roi_sampler: RoiSamplerConfig = RoiSamplerConfig()
    roi_align: RoiAlignConfig = RoiAlignConfig()
    box_head: BoxHeadConfig = BoxHeadConfig()
    mask_head: MaskHeadConfig = MaskHeadConfig()
    detection: DetectionConfig = DetectionConfig()
    losses: LossConfig = LossConfig()

    def __post_init__(self):
        a = self.anchors
        _check(2 <= a.min_level <= 5 and a.min_level <= a.max_level <= 6,
               "Need 2 <= anchors.min_level <= 5 and min_level <= max_level <= 6 (backbone C2..C5 plus a "
               f"pooled P6). Received: min_level={a.min_level}, max_level={a.max_level}")
        _check(self.num_classes >= 2, f"num_classes counts background, need >= 2. Received: {self.num_classes}")
        stride = 2 ** min(self.anchors.max_level, 5)  # C5's stride; P6 is a stride-2 pool of P5 at any size
        _check(all(s % stride == 0 for s in self.image_size),
               f"image_size must be multiples of {stride}. Received: image_size={self.image_size}")
        _check(self.mask_head.resolution == 2 * self.roi_align.mask_output_size,
               "mask_head.resolution must be 2 * roi_align.mask_output_size. Received: "
               f"{self.mask_head.resolution}, {self.roi_align.mask_output_size}")

    def flat_dict(self) -> Dict[str, Any]:
        """``{"rpn.pre_nms_topk_train": 2000, "num_classes": 91, ...}``: every leaf field."""
        return dict(flatten(self))

    def override(self, **flat: Any) -> "MaskRCNNConfig":
        """Copy with fields replaced by dotted name, e.g. ``**{"rpn.min_size": 1.0}``.

        ``__`` also separates levels, so ``override(rpn__min_size=1.0)`` works too.
        """
        return replace_flat(self, {key.replace("__", "."): value for key, value in flat.items()})
