"""Benchmark steps for Mask R-CNN (``main.py benchmark``): the shared trainer's real training
step and the real inference graph (proposals, detections, masks) on synthetic
device-resident batches of the network's input size (default 832x1344, NVIDIA's).
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from common import precision
from common.config import TrainerConfig
from common.logger import NullLogger
from common.optimizers import build_optimizer
from common.trainer import Trainer
from mrcnn_tf2.config import MaskRCNNConfig
from mrcnn_tf2.data.inputs import InputConfig
from mrcnn_tf2.data.synthetic import synthetic_batch
from mrcnn_tf2.task import DetectionTaskConfig, InstanceSegmentationTask, built_model


def _check_xla(xla: bool) -> None:
    if xla:
        raise SystemExit("error: mask-rcnn does not support XLA yet (dynamic shapes in NMS/ROIAlign)")


def make_train_step(config: MaskRCNNConfig, inputs: InputConfig, batch: int, xla: bool = False):
    """Zero-argument callable running one full training step (blocking), in the global policy."""
    _check_xla(xla)
    task = InstanceSegmentationTask(DetectionTaskConfig(config, inputs, synthetic=True))
    model = task.build_model()
    policy = keras.mixed_precision.global_policy().name
    optimizer = precision.wrap_optimizer(build_optimizer("sgd", 0.001, momentum=0.9), policy)
    trainer = Trainer(task, model, optimizer, TrainerConfig(weight_decay=1e-4), NullLogger())
    data = synthetic_batch(config, inputs, batch)
    return lambda: trainer.train_step(data)["loss"].numpy()


def make_infer_step(config: MaskRCNNConfig, inputs: InputConfig, batch: int, xla: bool = False):
    """Zero-argument callable running one inference pass (detections + masks, blocking)."""
    _check_xla(xla)
    model = built_model(config)
    features, _ = synthetic_batch(config, inputs, batch)
    forward = tf.function(lambda f: model({"images": f["images"], "image_info": f["image_info"]},
                                          training=False)["detection_scores"])
    return lambda: forward(features).numpy()
