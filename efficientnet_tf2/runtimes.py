"""OpenVINO and LiteRT stand-ins for the Keras classifier (``--runtime openvino`` / ``--runtime tflite``).

Like :class:`efficientnet_tf2.onnx_export.OnnxClassifier`, each is called where the Keras model would be, on the
normalised float32 ``[B, S, S, 3]`` crops of the same TensorFlow preprocessing; they are turned back into the exact
uint8 crops (:func:`preprocessing.denormalize`) the exported files take, and the runtime returns the logits
(inside a ``tf.function`` through ``tf.numpy_function``). OpenVINO compiles the ONNX export, LiteRT runs the TFLite
export (:mod:`efficientnet_tf2.tflite_export`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from common.io import openvino_runtime, tflite_runtime
from common.io.onnx_runtime import cpu_count
from efficientnet_tf2.onnx_export import INPUT_NAME
from efficientnet_tf2.preprocessing import denormalize
from efficientnet_tf2.tflite_export import SIGNATURE


class RuntimeClassifier:
    """``model(images)`` -> logits through :meth:`run` (uint8 ``[B, S, S, 3]`` -> float32 ``[B, C]`` logits)."""

    num_classes: int

    def run(self, crops: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Normalised float32 ``[B, S, S, 3]`` -> float32 ``[B, C]`` logits."""
        return np.asarray(self.run(denormalize(images)), np.float32)

    def __call__(self, images, training: bool = False):
        del training
        logits = tf.numpy_function(self.logits, [tf.cast(images, tf.float32)], tf.float32, stateful=False)
        return tf.ensure_shape(logits, [None, self.num_classes])


class OpenVinoClassifier(RuntimeClassifier):
    """OpenVINO (CPU plugin) on an ONNX file of ``export --format onnx``'s contract.

    Args:
      path: the ``.onnx`` file.
      num_classes: ``C``.
      threads: inference threads (None: one per usable core).
      precision: float arithmetic (:data:`common.io.openvino_runtime.PRECISIONS`).
    """

    def __init__(self, path: str, num_classes: int, threads: Optional[int] = None, precision: str = "f32"):
        self.path, self.num_classes = path, int(num_classes)
        self.compiled = openvino_runtime.compile_model(path, threads, precision)
        names = [n for o in self.compiled.outputs for n in o.get_names()]
        if len(self.compiled.inputs) != 1 or "logits" not in names:
            raise SystemExit(f"error: {path}: expected one uint8 input {INPUT_NAME!r} and a 'logits' output (main.py "
                             f"export --format onnx); found outputs {sorted(names)}")
        self._logits = self.compiled.output("logits")
        self._request = self.compiled.create_infer_request()

    def run(self, crops: np.ndarray) -> np.ndarray:
        return self._request.infer({0: crops})[self._logits]


class TfliteClassifier(RuntimeClassifier):
    """LiteRT (XNNPACK) on a ``.tflite`` file of ``export --format tflite``'s contract.

    Args:
      path: the ``.tflite`` file.
      num_classes: ``C``.
      threads: interpreter threads (None: one per usable core).
    """

    def __init__(self, path: str, num_classes: int, threads: Optional[int] = None):
        self.path, self.num_classes, self.threads = path, int(num_classes), int(threads or cpu_count())
        interpreter = tflite_runtime.make_interpreter(path, self.threads)
        signature = interpreter.get_signature_list().get(SIGNATURE, {})
        if signature.get("inputs") != [INPUT_NAME] or "logits" not in signature.get("outputs", []):
            raise SystemExit(f"error: {path}: expected a {SIGNATURE!r} signature with input {INPUT_NAME!r} and a "
                             f"'logits' output (main.py export --format tflite); found {signature or 'none'}")
        self._runner = interpreter.get_signature_runner(SIGNATURE)

    def run(self, crops: np.ndarray) -> np.ndarray:
        return self._runner(**{INPUT_NAME: crops})["logits"]
