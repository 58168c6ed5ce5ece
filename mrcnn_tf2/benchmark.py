"""Benchmark steps for Mask R-CNN: the shared trainer's real training step and the
real inference graph (proposals, detections, masks) on synthetic device-resident
batches of the network's input size (default 832x1344, NVIDIA's).
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import tensorflow as tf

from common import precision
from common.optimizers import build_optimizer
from common.trainer import Trainer, TrainerConfig
from mrcnn_tf2.cli import list_models  # noqa: F401  (benchmark family interface)
from mrcnn_tf2.config import MaskRCNNConfig
from mrcnn_tf2.data.pipeline import InputConfig
from mrcnn_tf2.data.synthetic import synthetic_batch
from mrcnn_tf2.task import DetectionTaskConfig, InstanceSegmentationTask, built_model

DEFAULT_SIZE = (832, 1344)
Size = Union[int, Sequence[int], str]


def default_image_size(name: str) -> str:
    """``"832x1344"``: NVIDIA's input size."""
    del name
    return "x".join(map(str, DEFAULT_SIZE))


def _size(image_size: Size) -> Tuple[int, int]:
    """``832``, ``(832, 1344)`` or ``"832x1344"`` -> ``(832, 1344)``."""
    if isinstance(image_size, str):
        parts = [int(p) for p in image_size.lower().split("x")]
        return (parts[0], parts[-1])
    if isinstance(image_size, int):
        return (image_size, image_size)
    return tuple(int(s) for s in image_size)


class _NullLogger:
    def log(self, *args, **kwargs):
        pass

    def flush(self):
        pass


def _setup(image_size: Size, num_classes):
    inputs = InputConfig(image_size=_size(image_size))
    config = MaskRCNNConfig().override(num_classes=num_classes or 91, image_size=inputs.batch_padded_size())
    task = InstanceSegmentationTask(DetectionTaskConfig(config, inputs, synthetic=True))
    return task, config, inputs


def make_train_step(name, batch, image_size, policy="float32", xla=False, num_classes=None):
    """Zero-argument callable running one full training step (blocking)."""
    if xla:
        raise ValueError("mask-rcnn does not support XLA yet (dynamic shapes in NMS/ROIAlign)")
    task, config, inputs = _setup(image_size, num_classes)
    model = task.build_model()
    optimizer = precision.wrap_optimizer(build_optimizer("sgd", 0.001, momentum=0.9), policy)
    trainer = Trainer(task, model, optimizer, TrainerConfig(weight_decay=1e-4, workspace=None,
                                                             save_checkpoints=False), _NullLogger())
    data = synthetic_batch(config, inputs, batch)
    return lambda: trainer._train_step(data)["loss"].numpy()


def make_infer_step(name, batch, image_size, policy="float32", xla=False, num_classes=None):
    """Zero-argument callable running one inference pass (detections + masks, blocking)."""
    if xla:
        raise ValueError("mask-rcnn does not support XLA yet (dynamic shapes in NMS/ROIAlign)")
    _, config, inputs = _setup(image_size, num_classes)
    model = built_model(config)
    features, _ = synthetic_batch(config, inputs, batch)
    forward = tf.function(lambda f: model({"images": f["images"], "image_info": f["image_info"]},
                                          training=False)["detection_scores"])
    return lambda: forward(features).numpy()
