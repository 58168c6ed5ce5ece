"""Benchmark steps for EfficientNet (``main.py benchmark``): the real training step of the
shared trainer and the real inference forward, on synthetic device-resident batches.

``keras-efficientnetb0`` (``tf_keras.applications.EfficientNetB0(weights=None)``)
is accepted as a reference model measured through the very same step.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from common.training import precision
from common.command.config import TrainerConfig
from common.io.logger import NullLogger
from common.training.optimizers import build_optimizer
from common.command.registry import get_experiment
from common.training.trainer import Trainer
from efficientnet_tf2.task import ClassificationConfig, ImageClassificationTask

REFERENCE_MODELS = {"keras-efficientnetb0": lambda size, classes: keras.applications.EfficientNetB0(
    weights=None, input_shape=(size, size, 3), classes=classes, classifier_activation=None)}


def _task_and_model(name: str, image_size: int, num_classes):
    num_classes = num_classes or 1000
    classifier = get_experiment(name, benchmark=True).task.model
    task = ImageClassificationTask(ClassificationConfig(
        model=name, data_backend="synthetic", num_classes=num_classes, image_size=image_size,
        mixup=0.2, label_smoothing=0.1, model_config=classifier))
    model = REFERENCE_MODELS[name](image_size, num_classes) if name in REFERENCE_MODELS else task.build_model()
    if classifier.quantized:
        model = _calibrated_qat_model(model, image_size, num_classes)
    return task, model


def _calibrated_qat_model(model, image_size: int, num_classes: int):
    """``efficientnet-quant-*``: the quantized graph, as ``main.py train`` fine-tunes it from FP32 weights
    (fixed ranges), its activation ranges calibrated on one synthetic batch so no Q/DQ op sees a zero range."""
    from efficientnet_tf2 import qat

    quantized = qat.quantize_model(model, qat.FIXED_RANGES)
    qat.calibrate(quantized, [_synthetic_batch(8, image_size, num_classes)[0]], method="max")
    return quantized


def _synthetic_batch(batch: int, image_size: int, num_classes: int):
    images = tf.random.stateless_normal([batch, image_size, image_size, 3], seed=[1, 2])
    labels = tf.random.stateless_uniform([batch], [3, 4], maxval=num_classes, dtype=tf.int32)
    return images, labels


def make_train_step(name, batch, image_size, xla=False, num_classes=None):
    """Returns a zero-argument callable running one full training step (blocking), in the global policy."""
    num_classes = num_classes or 1000
    task, model = _task_and_model(name, image_size, num_classes)
    policy = tf_keras_policy()
    optimizer = precision.wrap_optimizer(build_optimizer("rmsprop", 0.01), policy)
    trainer = Trainer(task, model, optimizer, TrainerConfig(weight_decay=1e-5), NullLogger(), xla=xla)
    data = _synthetic_batch(batch, image_size, num_classes)
    return lambda: trainer.train_step(data)["loss"].numpy()


def tf_keras_policy() -> str:
    """Name of the global Keras dtype policy (set by the command's runtime set-up)."""
    return keras.mixed_precision.global_policy().name


def make_infer_step(name, batch, image_size, xla=False, num_classes=None):
    """Returns a zero-argument callable running one inference forward pass (blocking)."""
    num_classes = num_classes or 1000
    _, model = _task_and_model(name, image_size, num_classes)
    forward = tf.function(lambda x: tf.nn.softmax(tf.cast(model(x, training=False), tf.float32)),
                          jit_compile=xla)
    images, _ = _synthetic_batch(batch, image_size, num_classes)
    return lambda: forward(images).numpy()


_EXPORTED = {}  # (name, image size, classes) -> ONNX path: one export per model for all batch sizes


def make_onnxruntime_infer_step(name, batch, image_size, num_classes=None, threads=None, optimization="all"):
    """Returns a zero-argument callable: onnxruntime (CPU) on a uint8 ``[B, S, S, 3]`` batch.

    The graph is ``main.py export --format onnx``'s (normalisation, the model, softmax) of the same
    randomly initialised model the TF row times, exported once per model (dynamic batch).
    """
    import numpy as np

    from common.io import onnx_runtime
    from efficientnet_tf2 import onnx_export

    onnx_runtime.require_onnxruntime()
    key = (name, image_size, num_classes or 1000)
    if key not in _EXPORTED:
        _, model = _task_and_model(name, image_size, num_classes)
        _EXPORTED[key] = onnx_export.export_to_temporary_file(model, image_size)
    session = onnx_runtime.make_session(_EXPORTED[key], threads, optimization)
    extra = [i.name for i in session.get_inputs() if i.name != onnx_export.INPUT_NAME]
    if extra:  # keras.applications' Normalization constants come out of tf2onnx as graph inputs
        raise SystemExit(f"error: {name}'s ONNX graph needs inputs besides {onnx_export.INPUT_NAME!r} ({extra}): "
                         f"it cannot be timed with --runtime onnxruntime; benchmark it with --runtime tf")
    images = np.random.default_rng(0).integers(0, 256, size=(batch, image_size, image_size, 3), dtype=np.uint8)
    feed = {onnx_export.INPUT_NAME: images}
    return lambda: session.run(["probabilities"], feed)[0]
