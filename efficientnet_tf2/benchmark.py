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


def _task_and_model(name: str, image_size: int, num_classes, quantize: bool = True):
    """``(task, model)`` of ``name`` (random weights); ``quantize=False``: a QAT model's float architecture."""
    num_classes = num_classes or 1000
    classifier = get_experiment(name, benchmark=True).task.model
    task = ImageClassificationTask(ClassificationConfig(
        model=name, data_backend="synthetic", num_classes=num_classes, image_size=image_size,
        mixup=0.2, label_smoothing=0.1, model_config=classifier))
    model = REFERENCE_MODELS[name](image_size, num_classes) if name in REFERENCE_MODELS else task.build_model()
    if classifier.quantized and quantize:
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


_EXPORTED = {}  # (name, size, classes, format, int8) -> file: one export per model for all batch sizes
CALIBRATION_CROPS = 16  # synthetic crops the INT8 rows are calibrated on (timing only; accuracy: the int8 benchmark)


def exported_file(name: str, image_size: int, num_classes, fmt: str, int8: bool) -> str:
    """The randomly initialised ``name`` exported once as ``fmt`` (``onnx`` | ``tflite``): FP32, or int8 (ONNX: a QAT
    model's own Q/DQ graph; a float model calibrated on :data:`CALIBRATION_CROPS` synthetic crops)."""
    import numpy as np

    from efficientnet_tf2 import onnx_export, tflite_export

    key = (name, image_size, num_classes or 1000, fmt, int8)
    if isinstance(_EXPORTED.get(key), SystemExit):  # cannot be exported: said once, not re-exported per row
        raise _EXPORTED[key]
    if key in _EXPORTED:
        return _EXPORTED[key]
    _, model = _task_and_model(name, image_size, num_classes)
    quantized = name not in REFERENCE_MODELS and get_experiment(name, benchmark=True).task.model.quantized
    crops = np.random.default_rng(1).integers(0, 256, (CALIBRATION_CROPS, image_size, image_size, 3), np.uint8)
    if fmt == "tflite":  # a QAT model is int8 with its (calibrated) ranges either way
        path = tflite_export.export_to_temporary_file(model, image_size, "int8" if int8 or quantized else "none",
                                                      crops if int8 or quantized else None,
                                                      lambda: _task_and_model(name, image_size, num_classes, False)[1])
    else:
        path = exported_file(name, image_size, num_classes, fmt, False) if int8 else \
            onnx_export.export_to_temporary_file(model, image_size)
        try:
            _check_single_input(name, path)
        except SystemExit as err:
            _EXPORTED[key] = _EXPORTED[key[:-1] + (False,)] = err
            raise
        if int8 and not quantized:
            path = onnx_export.quantize_onnx(path, path.replace(".onnx", ".int8.onnx"), crops)
    _EXPORTED[key] = path
    return path


def _check_single_input(name: str, path: str) -> None:
    """Raises SystemExit when the ONNX graph at ``path`` takes inputs besides the images (keras.applications'
    Normalization constants come out of tf2onnx as graph inputs): no ONNX runtime can time it."""
    import onnx

    from efficientnet_tf2 import onnx_export

    graph = onnx.load(path, load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    extra = [i.name for i in graph.input if i.name != onnx_export.INPUT_NAME and i.name not in initializers]
    if extra:
        raise SystemExit(f"error: {name}'s ONNX graph needs inputs besides {onnx_export.INPUT_NAME!r} ({extra}): "
                         "ONNX runtimes cannot time it; benchmark it with --runtime tf or tflite")


def _images(batch: int, image_size: int):
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, size=(batch, image_size, image_size, 3), dtype=np.uint8)


def make_onnxruntime_infer_step(name, batch, image_size, num_classes=None, threads=None, optimization="all",
                                int8=False):
    """Returns a zero-argument callable: onnxruntime (CPU) on a uint8 ``[B, S, S, 3]`` batch.

    The graph is ``main.py export --format onnx``'s (normalisation, the model, softmax) of the same
    randomly initialised model the TF row times, exported once per model (dynamic batch); ``int8``: its
    static int8 Q/DQ graph (:func:`efficientnet_tf2.onnx_export.quantize_onnx`).
    """
    from common.io import onnx_runtime
    from efficientnet_tf2 import onnx_export

    onnx_runtime.require_onnxruntime()
    session = onnx_runtime.make_session(exported_file(name, image_size, num_classes, "onnx", int8), threads,
                                        optimization)
    feed = {onnx_export.INPUT_NAME: _images(batch, image_size)}
    return lambda: session.run(["probabilities"], feed)[0]


def make_openvino_infer_step(name, batch, image_size, num_classes=None, int8=False, precision="f32"):
    """Returns a zero-argument callable: OpenVINO (CPU plugin, ``precision`` float arithmetic, latency hint) on the
    same ONNX file as the onnxruntime row (``int8``: the Q/DQ graph, run by OpenVINO's int8 kernels)."""
    from common.io import openvino_runtime

    openvino_runtime.require_openvino()
    compiled = openvino_runtime.compile_model(exported_file(name, image_size, num_classes, "onnx", int8),
                                              precision=precision)
    request, images = compiled.create_infer_request(), _images(batch, image_size)
    return lambda: request.infer({0: images})


def make_tflite_infer_step(name, batch, image_size, num_classes=None, int8=False):
    """Returns a zero-argument callable: LiteRT (XNNPACK, one thread per core) on ``export --format tflite``'s file
    of the same model (``int8``: full int8, calibrated; QAT models: int8 with their ranges)."""
    from common.io import tflite_runtime
    from efficientnet_tf2 import onnx_export, tflite_export

    interpreter = tflite_runtime.make_interpreter(exported_file(name, image_size, num_classes, "tflite", int8))
    runner = interpreter.get_signature_runner(tflite_export.SIGNATURE)
    feed = {onnx_export.INPUT_NAME: _images(batch, image_size)}
    runner(**feed)  # sizes the tensors for this batch once
    return lambda: runner(**feed)
