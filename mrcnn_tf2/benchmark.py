"""Benchmark steps for Mask R-CNN (``main.py benchmark``): the shared trainer's real training
step and the real inference graph (proposals, detections, masks) on synthetic
device-resident batches of the network's input size (default 832x1344, NVIDIA's).
"""
from __future__ import annotations

import os
import tempfile

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


_EXPORTED = {}  # (config, input config) -> ONNX path: one export for all batch sizes


def make_onnxruntime_infer_step(config: MaskRCNNConfig, inputs: InputConfig, batch: int, threads=None):
    """Zero-argument callable: onnxruntime (CPU) on a uint8 ``[B, H, W, 3]`` batch of the input size.

    The graph is ``main.py export --format onnx --onnx-masks raw``'s (resize + normalise + pad, the
    network, detections, 28x28 mask logits, original-pixel boxes) of the same randomly initialised
    model the TF row times, exported once (dynamic batch). Beside the TF row's forward it also
    runs the in-graph preprocessing (one resize at the input size: a few ms of a multi-second step).
    """
    import numpy as np

    from common import onnx_runtime
    from mrcnn_tf2 import onnx_export

    onnx_runtime.require_onnxruntime()
    key = (repr(config), repr(inputs))
    if key not in _EXPORTED:
        names = ["background"] + [f"class{i}" for i in range(1, config.num_classes)]
        path = os.path.join(tempfile.mkdtemp(prefix="onnxruntime-"), "model.onnx")
        _EXPORTED[key] = onnx_export.export_onnx(built_model(config), path, inputs, names,
                                                 list(range(config.num_classes)), masks="raw")
    session = onnx_runtime.make_session(_EXPORTED[key], threads)
    height, width = inputs.image_size
    images = np.random.default_rng(0).integers(0, 256, size=(batch, height, width, 3), dtype=np.uint8)
    return lambda: session.run(["detection_scores"], {onnx_export.INPUT_NAME: images})[0]
