"""TFLite export of an EfficientNet classifier: FP32, FP16, dynamic-range int8, full int8, QAT.

The file keeps the ONNX export's contract (:mod:`efficientnet_tf2.onnx_export`): one signature,
``serving_default``, input ``images`` uint8 ``[B, S, S, 3]`` centre crops (normalised inside), outputs
``probabilities`` float32 ``[B, C]``, ``classes`` int32 ``[B]`` and ``logits`` float32 ``[B, C]``; the batch is
dynamic. Class names go to ``labels.txt`` beside it (TFLite's convention). ``quantize``:

* ``none``: float32 weights and kernels.
* ``fp16``: float16 weights (half the file), float32 kernels on CPU.
* ``dynamic``: int8 weights, activations quantized on the fly per batch (no calibration).
* ``int8``: int8 weights and activations, activation ranges calibrated on ``calibration`` images (the uint8
  input and the float outputs stay as they are).

QAT models (``efficientnet-quant-*``) are always ``int8``, with the activation ranges they were trained with
(:mod:`efficientnet_tf2.qat_tflite`; calibration images give the ranges of the tensors QAT does not quantize).
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from efficientnet_tf2 import export_graph
from efficientnet_tf2.onnx_export import INPUT_NAME, OUTPUT_NAMES, centre_crops, classifier_function

QUANTIZATIONS = ("none", "fp16", "dynamic", "int8")
QAT_KINDS = ("none", "int8")  # a QAT model exports as int8 with its trained ranges either way
QAT_OTHER_KINDS = ("a quantization-aware model exports to TFLite as full int8 with its trained ranges "
                   "(--quantize int8); fp16 or dynamic would throw those ranges away")
SIGNATURE = "serving_default"


def signature_function(model, image_size: int):
    """``tf.function`` uint8 ``[B, S, S, 3]`` -> ``{"probabilities", "classes", "logits"}`` (the signature's names)."""
    classify = classifier_function(model, image_size, export_graph.normalize_1x1)

    @tf.function(input_signature=classify.input_signature)
    def serve(images):
        return dict(zip(OUTPUT_NAMES, classify(images)))

    return serve


def export_tflite(model, path: str, image_size: int, class_names: Sequence[str] = (), quantize: str = "none",
                  calibration: Optional[np.ndarray] = None, build_float: Optional[Callable] = None) -> str:
    """Converts ``model`` to a ``.tflite`` file at ``path``; returns the path.

    Args:
      model: the Keras classifier (FP32, or quantization-aware).
      path: the file to write (its folder is created; ``labels.txt`` beside it when ``class_names``).
      image_size: ``S``.
      class_names: ``C`` names.
      quantize: one of :data:`QUANTIZATIONS` (a QAT model: one of :data:`QAT_KINDS`, int8 either way).
      calibration: uint8 ``[N, S, S, 3]`` crops, needed by ``int8`` and by QAT models.
      build_float: for a QAT ``model``, a zero-argument builder of its architecture unquantized
        (:func:`efficientnet_tf2.qat_tflite.clipped_float_model`).

    Raises:
      ValueError: an unknown ``quantize``, fp16/dynamic for a QAT model, or int8 without calibration images.
    """
    from efficientnet_tf2 import qat

    quantized_model = qat.is_quantized(model)
    if quantize not in (QAT_KINDS if quantized_model else QUANTIZATIONS):
        if quantized_model and quantize in QUANTIZATIONS:
            raise ValueError(QAT_OTHER_KINDS)
        raise ValueError(f"Received: quantize={quantize!r}; expected one of {QUANTIZATIONS}")
    if (quantize == "int8" or quantized_model) and (calibration is None or not len(calibration)):
        raise ValueError("int8 TFLite export needs calibration images (--calibration-images N)")
    flat = _convert_qat(model, build_float, image_size, calibration) if quantized_model else \
        _convert_float(model, image_size, quantize, calibration)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "wb") as handle:
        handle.write(flat)
    os.replace(path + ".tmp", path)
    if class_names:
        with open(os.path.join(os.path.dirname(os.path.abspath(path)), "labels.txt"), "w") as handle:
            handle.write("".join(f"{name}\n" for name in class_names))
    return path


def _converter(model, image_size: int, quantize: str, calibration: Optional[np.ndarray]):
    """A TFLite converter of ``model``'s signature function at ``quantize``."""
    function = signature_function(model, int(image_size))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], model)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def _convert_float(model, image_size: int, quantize: str, calibration: Optional[np.ndarray]) -> bytes:
    model = export_graph.for_export(model)  # no run-time shape arithmetic: one XNNPACK partition, not 33
    return _converter(model, image_size, quantize, calibration).convert()


def _convert_qat(model, build_float: Optional[Callable], image_size: int, calibration: np.ndarray) -> bytes:
    """Full int8 of a QAT model with its trained ranges (:mod:`efficientnet_tf2.qat_tflite`)."""
    from efficientnet_tf2 import qat_tflite

    if build_float is None:
        raise ValueError("a QAT model's TFLite export needs its float architecture (build_float)")
    clipped = qat_tflite.clipped_float_model(model, build_float)
    converter = _converter(clipped, image_size, "int8", calibration)
    converter._experimental_calibrate_only = True  # statistics only: the clips go before quantization
    return qat_tflite.quantize(converter.convert())


def export_to_temporary_file(model, image_size: int, quantize: str = "none", calibration=None,
                             build_float: Optional[Callable] = None) -> str:
    """:func:`export_tflite` into ``model.tflite`` of a fresh temporary folder; returns its path."""
    import tempfile

    return export_tflite(model, os.path.join(tempfile.mkdtemp(prefix="tflite-"), "model.tflite"), image_size,
                         quantize=quantize, calibration=calibration, build_float=build_float)


def run_tflite(path: str, images: np.ndarray, threads: Optional[int] = None) -> Dict[str, np.ndarray]:
    """LiteRT (XNNPACK) on uint8 ``[B, S, S, 3]`` images -> ``{"probabilities", "classes", "logits"}``."""
    from common.io import tflite_runtime

    runner = tflite_runtime.make_interpreter(path, threads).get_signature_runner(SIGNATURE)
    return runner(**{INPUT_NAME: images})


#: ``--verify`` tolerance on max |probability difference| per float quantization (int8 kinds: reported only).
TOLERANCES = {"none": 1e-4, "fp16": 1e-2}


def compare_with_keras(model, path: str, crops: np.ndarray) -> Dict[str, float]:
    """Max |probability difference| and top-1 agreement of LiteRT vs Keras on uint8 ``crops``."""
    expected = classifier_function(model, crops.shape[1])(tf.constant(crops))[0].numpy()
    got = run_tflite(path, crops)["probabilities"]
    return {"max_abs_diff": float(np.max(np.abs(got - expected))),
            "top1_agreement": float(np.mean(np.argmax(got, -1) == np.argmax(expected, -1)))}


def verify_tflite(model, path: str, image_size: int, paths: Sequence[str], quantize: str) -> Dict[str, float]:
    """LiteRT vs Keras on image files (centre crops): float files within :data:`TOLERANCES`; int8 reported.

    Raises:
      SystemExit: a float export differs beyond its tolerance (one line).
    """
    result = compare_with_keras(model, path, centre_crops(paths, image_size))
    limit = TOLERANCES.get(quantize)
    if limit is not None and result["max_abs_diff"] > limit:
        raise SystemExit(f"error: {path} differs from Keras by {result['max_abs_diff']:.2e} (> {limit:g})")
    return result
