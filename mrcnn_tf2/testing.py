"""Test helpers: a tiny Mask R-CNN that builds and runs a step in seconds on a CPU.

Every component stays real (ResNet-50 layout, FPN P2-P6, RPN, RoI sampling, both heads); only
widths and proposal / RoI / detection counts shrink::

    model = MaskRCNN(tiny_config(**{"detection.score_threshold": 0.0}), seed=0)
"""
from __future__ import annotations

from typing import Any

from mrcnn_tf2.config import MaskRCNNConfig

#: Dotted-name overrides of :class:`MaskRCNNConfig` for 128x128 inputs and 3 classes.
TINY_OVERRIDES = {
    "num_classes": 3, "image_size": (128, 128), "backbone.width_multiplier": 0.25, "fpn.channels": 32,
    "rpn.channels": 32, "rpn.pre_nms_topk_train": 100, "rpn.post_nms_topk_train": 50,
    "rpn.pre_nms_topk_test": 100, "rpn.post_nms_topk_test": 50, "roi_sampler.batch_size_per_image": 32,
    "box_head.fc_dims": 64, "mask_head.channels": 16, "detection.max_detections": 10,
}


def tiny_config(**overrides: Any) -> MaskRCNNConfig:
    """:data:`TINY_OVERRIDES` applied to the default config, then ``overrides`` (dotted names)."""
    return MaskRCNNConfig().override(**{**TINY_OVERRIDES, **overrides})
