"""Benchmark steps for Mask R-CNN (``main.py benchmark``): the shared trainer's real training
step and the real inference graph (proposals, detections, masks) on synthetic
device-resident batches of the network's input size (default 832x1344, NVIDIA's).
"""
from __future__ import annotations

import os
import tempfile

import tensorflow as tf
import tf_keras as keras

from common.training import precision
from common.command.config import TrainerConfig
from common.io.logger import NullLogger
from common.training.optimizers import build_optimizer
from common.training.trainer import Trainer
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
    """Zero-argument callable running one inference pass (detections + masks, blocking).

    The model and the images are the onnxruntime row's (:func:`inference_model`, :func:`benchmark_images`),
    preprocessed by the export's code, so both rows find the same detections and do the same work.
    """
    from mrcnn_tf2.export import preprocess_batch

    _check_xla(xla)
    model = inference_model(config)
    images, info = preprocess_batch(tf.constant(benchmark_images(inputs, batch)), inputs, inputs.batch_padded_size())
    forward = tf.function(lambda x, i: model({"images": x, "image_info": i}, training=False))
    print(f"tf: {forward(images, info)['num_detections'].numpy().tolist()} detections in the batch", flush=True)
    return lambda: forward(images, info)["detection_scores"].numpy()


_MODELS = {}  # repr(config) -> the seeded random-weight model of inference rows


def inference_model(config: MaskRCNNConfig):
    """One random-weight model per config, seeded (``keras.utils.set_random_seed(0)``): the tf and onnxruntime
    rows time the same weights."""
    key = repr(config)
    if key not in _MODELS:
        keras.utils.set_random_seed(0)
        _MODELS[key] = built_model(config)
    return _MODELS[key]


def benchmark_images(inputs: InputConfig, batch: int):
    """``[B, H, W, 3] uint8`` seeded noise at the input size (H, W = ``inputs.image_size``)."""
    import numpy as np

    height, width = inputs.image_size
    return np.random.default_rng(0).integers(0, 256, size=(batch, height, width, 3), dtype=np.uint8)


_EXPORTED = {}  # (config, input config) -> ONNX path: one export for all batch sizes


def make_onnxruntime_infer_step(config: MaskRCNNConfig, inputs: InputConfig, batch: int, threads=None):
    """Zero-argument callable: onnxruntime (CPU) on a uint8 ``[B, H, W, 3]`` batch of the input size.

    The graph is ``main.py export --format onnx --onnx-masks raw``'s (resize + normalise + pad, the
    network, detections, 28x28 mask logits, original-pixel boxes) of the same randomly initialised
    model the TF row times, exported once (dynamic batch). Beside the TF row's forward it also
    runs the in-graph preprocessing (one resize at the input size) and the box post-processing.
    """
    from common.io import onnx_runtime
    from mrcnn_tf2 import onnx_export

    onnx_runtime.require_onnxruntime()
    key = (repr(config), repr(inputs))
    if key not in _EXPORTED:
        names = ["background"] + [f"class{i}" for i in range(1, config.num_classes)]
        path = os.path.join(tempfile.mkdtemp(prefix="onnxruntime-"), "model.onnx")
        _EXPORTED[key] = onnx_export.export_onnx(inference_model(config), path, inputs, names,
                                                 list(range(config.num_classes)), masks="raw")
        print(f"exported to {path} ({os.path.getsize(path) / 2**20:.1f} MiB)", flush=True)
    session = onnx_runtime.make_session(_EXPORTED[key], threads)
    feed = {onnx_export.INPUT_NAME: benchmark_images(inputs, batch)}
    found = session.run(["num_detections"], feed)[0]
    print(f"onnxruntime: {found.tolist()} detections in the batch", flush=True)
    return lambda: session.run(["detection_scores"], feed)[0]
