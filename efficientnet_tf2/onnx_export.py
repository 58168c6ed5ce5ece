"""ONNX export of an EfficientNet classifier (FP32 or QAT) through tf2onnx.

Graph contract, the SavedModel's ``serving_default`` without the resize
(ONNX has no antialiased resize that matches TensorFlow's):

* input ``images``: uint8 ``[B, S, S, 3]`` RGB, already resized (short side to
  S + 32) and centre-cropped to S x S as :func:`preprocessing.eval_resize_crop`
  does; the ImageNet normalisation runs inside the graph;
* outputs ``probabilities`` float32 ``[B, C]``, ``classes`` int32 ``[B]`` and ``logits`` float32
  ``[B, C]`` (what the Keras model returns: the loss of ``eval --runtime onnxruntime``);
* metadata properties ``image_size``, ``class_names`` (JSON list) and ``input``.

For a QAT model (:mod:`efficientnet_tf2.qat`) tf2onnx turns every
``QuantizeAndDequantize`` op into an int8 QuantizeLinear/DequantizeLinear pair
(per-axis for weights, hence opset >= 13), the form TensorRT's explicit
quantization reads.
"""
from __future__ import annotations

import json
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from common.io import onnx_convert, onnx_runtime
from efficientnet_tf2.preprocessing import denormalize, normalize

MIN_OPSET = 13
INPUT_NAME, OUTPUT_NAMES = "images", ("probabilities", "classes", "logits")
# Ops whose weight and activation input must be dequantized in a QAT graph.
MATMUL_OPS = ("Conv", "Gemm", "MatMul")
# Ops that may sit between a DequantizeLinear and the Conv/Gemm it feeds (layout, padding, flattening).
TRANSPARENT_OPS = ("Transpose", "Reshape", "Pad", "Identity", "Squeeze", "Unsqueeze", "Flatten")


def classifier_function(model, image_size: int, normalizer=normalize):
    """``tf.function``: uint8 ``[B, S, S, 3]`` -> ``(probabilities [B, C], classes [B] int32, logits [B, C])``
    (``normalizer``: float pixels -> the model's normalised input)."""

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name=INPUT_NAME)])
    def classify(images):
        logits = tf.cast(model(normalizer(tf.cast(images, tf.float32)), training=False), tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        return probabilities, tf.argmax(probabilities, axis=-1, output_type=tf.int32), logits

    return classify


def export_onnx(model, path: str, image_size: int, class_names: Sequence[str] = (), opset: int = MIN_OPSET) -> str:
    """Converts ``model`` with uint8-image input to an ONNX file at ``path``.

    Raises:
      ValueError: ``opset`` below 13 (per-axis Q/DQ needs 13).
    """
    import tf2onnx

    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}. Received: opset={opset}")
    function = classifier_function(model, int(image_size))
    proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=opset)
    onnx_convert.name_outputs(proto, OUTPUT_NAMES)
    meta = {"image_size": str(int(image_size)), "class_names": json.dumps(list(class_names)),
            "input": "uint8 [B, S, S, 3] RGB, resized (short side S+32) and centre-cropped; normalised inside"}
    return onnx_convert.save_checked(proto, path, meta)


def export_to_temporary_file(model, image_size: int, class_names: Sequence[str] = ()) -> str:
    """:func:`export_onnx` into ``model.onnx`` of a fresh temporary folder; returns its path."""
    import os
    import tempfile

    return export_onnx(model, os.path.join(tempfile.mkdtemp(prefix="onnxruntime-"), "model.onnx"), image_size,
                       class_names)


def run_onnx(path: str, images: np.ndarray, threads: Optional[int] = None) -> Dict[str, np.ndarray]:
    """onnxruntime (CPU) on uint8 ``[B, S, S, 3]`` images -> ``{"probabilities", "classes"[, "logits"]}``."""
    session = onnx_runtime.make_session(path, threads)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT_NAME: images})))


class OnnxClassifier:
    """Stands in for the Keras classifier under ``--runtime onnxruntime``: ``model(images)`` -> logits.

    ``images`` are what every TensorFlow path hands the Keras model (normalised float32
    ``[B, S, S, 3]`` from the same decode / resize / crop code); they are turned back into the
    exact uint8 crops (:func:`preprocessing.denormalize`) that the exported graph takes, and
    onnxruntime runs the graph (inside a ``tf.function`` through ``tf.numpy_function``). Files
    exported before the ``logits`` output existed give ``log(probabilities)`` (same ranking and
    cross-entropy up to float rounding).

    Args:
      path: an ONNX file of :func:`export_onnx`'s contract.
      num_classes: ``C`` (the static width of the logits).
      threads: intra-op threads (None: one per usable core).
    """

    def __init__(self, path: str, num_classes: int, threads: Optional[int] = None):
        self.path, self.num_classes = path, int(num_classes)
        self.session = onnx_runtime.make_session(path, threads)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(uint8)":
            raise SystemExit(f"error: {path}: expected one uint8 input named {INPUT_NAME!r} (main.py export "
                             f"--format onnx); found {[(i.name, i.type) for i in inputs]}")
        self._outputs = [o.name for o in self.session.get_outputs()]

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Normalised float32 ``[B, S, S, 3]`` -> float32 ``[B, C]`` logits."""
        feed = {INPUT_NAME: denormalize(images)}
        if "logits" in self._outputs:
            return self.session.run(["logits"], feed)[0].astype(np.float32)
        probabilities = self.session.run(["probabilities"], feed)[0]
        return np.log(np.maximum(probabilities, np.finfo(np.float32).tiny)).astype(np.float32)

    def __call__(self, images, training: bool = False):
        del training
        logits = tf.numpy_function(self.logits, [tf.cast(images, tf.float32)], tf.float32, stateful=False)
        return tf.ensure_shape(logits, [None, self.num_classes])


def compare_with_keras(model, path: str, images: np.ndarray) -> Dict[str, float]:
    """Max |probability difference| and top-1 agreement of ONNX vs Keras on uint8 ``images``."""
    expected = classifier_function(model, images.shape[1])(tf.constant(images))[0].numpy()
    got = run_onnx(path, images)["probabilities"]
    return {"max_abs_diff": float(np.max(np.abs(got - expected))),
            "top1_agreement": float(np.mean(np.argmax(got, -1) == np.argmax(expected, -1)))}


def qdq_coverage(path_or_proto) -> List[Dict[str, object]]:
    """For every Conv/Gemm/MatMul: is its weight and its activation input produced by a DequantizeLinear?

    Layout ops (Transpose, Reshape, Pad, ...) between the DequantizeLinear and
    the consumer are looked through. Returns one dict per node:
    ``{"name", "op", "weight_dq", "input_dq"}``.
    """
    import onnx

    proto = onnx.load(path_or_proto) if isinstance(path_or_proto, str) else path_or_proto
    producers = {out: node for node in proto.graph.node for out in node.output}

    def dequantized(tensor):
        node = producers.get(tensor)
        while node is not None and node.op_type in TRANSPARENT_OPS:
            node = producers.get(node.input[0])
        return node is not None and node.op_type == "DequantizeLinear"

    return [{"name": node.name, "op": node.op_type, "input_dq": dequantized(node.input[0]),
             "weight_dq": dequantized(node.input[1])}
            for node in proto.graph.node if node.op_type in MATMUL_OPS]


def count_ops(path_or_proto) -> Dict[str, int]:
    """Op type -> number of nodes in the ONNX graph."""
    import onnx

    proto = onnx.load(path_or_proto) if isinstance(path_or_proto, str) else path_or_proto
    counts: Dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def centre_crops(paths: Iterable[str], image_size: int, count: Optional[int] = None) -> np.ndarray:
    """uint8 ``[N, S, S, 3]`` centre crops (eval preprocessing) of the first ``count`` (None: all) ``paths``."""
    from efficientnet_tf2 import data as data_lib
    from efficientnet_tf2.preprocessing import eval_resize_crop

    crops = []
    for path in paths:
        if count is not None and len(crops) == count:
            break
        crops.append(eval_resize_crop(data_lib.decode_image_file(path), image_size).numpy())
    return np.stack(crops) if crops else np.zeros((0, image_size, image_size, 3), np.uint8)


def verify_onnx(model, path: str, image_size: int, paths: Sequence[str], quantized: bool) -> Dict[str, float]:
    """onnxruntime vs Keras on image files (centre crops): FP32 needs max |dprob| <= 1e-4, QAT the same top-1.

    Raises:
      SystemExit: the export disagrees (one line).
    """
    result = compare_with_keras(model, path, centre_crops(paths, image_size))
    if quantized and result["top1_agreement"] < 1.0:
        raise SystemExit("error: quantized ONNX model disagrees with Keras on the top-1 class")
    if not quantized and result["max_abs_diff"] > 1e-4:
        raise SystemExit(f"error: exported model differs from Keras by {result['max_abs_diff']:.2e} (> 1e-4)")
    return result


def quantize_onnx(path: str, out: str, crops: np.ndarray) -> str:
    """Post-training static int8 of an FP32 export: onnxruntime's ``quantize_static`` in the Q/DQ format (int8
    per-channel weights, uint8 activations calibrated by min/max on ``crops``, uint8 ``[N, S, S, 3]``), which
    onnxruntime fuses into QLinearConv/MatMulInteger kernels and OpenVINO into its int8 kernels. Returns ``out``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Crops(CalibrationDataReader):
        def __init__(self):
            self._batches = iter([{INPUT_NAME: crop[None]} for crop in crops])

        def get_next(self):
            return next(self._batches, None)

    quantize_static(path, out, Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out
