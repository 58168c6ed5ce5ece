"""Test helpers: a tiny Mask R-CNN that builds and runs a step in seconds on a CPU.

Every component stays real (ResNet-50 layout, FPN P2-P6, RPN, RoI sampling, both heads); only
widths and proposal / RoI / detection counts shrink::

    model = MaskRCNN(tiny_config(**{"detection.score_threshold": 0.0}), seed=0)
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import numpy as np

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


def random_torch_weights(shapes: Mapping[str, Sequence[int]], seed: int) -> Dict[str, np.ndarray]:
    """Seeded random values of a PyTorch ``state_dict`` (torch-free: the fixture script and the tests share it).

    Keys are drawn in sorted order from one ``numpy`` generator: conv / linear weights He-normal
    (std ``sqrt(2 / fan_in)``), BatchNorm weights U(0.5, 1.0), BatchNorm and other biases N(0, 0.05).
    BatchNorm running statistics are not drawn: the fixture calibrates them on an image and stores them.

    Args:
      shapes: ``{key: shape}`` of the weights to draw (without ``running_*`` / ``num_batches_tracked``).
      seed: generator seed.

    Returns:
      ``{key: float32 array}``.
    """
    rng = np.random.default_rng(seed)
    values = {}
    for key in sorted(shapes):
        shape = tuple(int(d) for d in shapes[key])
        if len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif key.endswith(".weight"):
            value = rng.uniform(0.5, 1.0, shape)
        else:
            value = rng.normal(0.0, 0.05, shape)
        values[key] = value.astype(np.float32)
    return values


def torchvision_detector_state(fixtures: str) -> Dict[str, np.ndarray]:
    """A full-size torchvision ``maskrcnn_resnet50_fpn`` state_dict (91 classes) re-created torch-free from
    ``fixtures`` (``tests/fixtures/torchvision``: ``detector.json`` shapes, seed and output scales;
    ``detector.npz`` the calibrated BatchNorm statistics), as ``scripts/make_torchvision_fixture.py`` made it."""
    import json
    import os

    with open(os.path.join(fixtures, "detector.json")) as handle:
        meta = json.load(handle)
    state = random_torch_weights(meta["shapes"], meta["seed"])
    for key, factor in meta["scaled"].items():
        state[key] = state[key] * np.float32(factor)
    with np.load(os.path.join(fixtures, "detector.npz")) as arrays:
        state.update({k: arrays[k] for k in arrays.files if k.endswith(("running_mean", "running_var"))})
    return state
