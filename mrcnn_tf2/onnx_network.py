"""The network as an ONNX graph: Mask R-CNN's ``--runtime onnxruntime`` in eval and infer.

Shape glossary
  B       images per batch (dynamic)
  Hp, Wp  the fixed network input size (``InputConfig.batch_padded_size()``)
  D       detection slots per image (``detection.max_detections``); m mask side (28)

``eval`` and ``infer`` keep their TensorFlow input pipeline and post-processing (decode, resize,
normalise, pad; COCO conversion, mask pasting, drawing) and swap only the network: the Keras
model's inference call ``model({"images", "image_info"}, training=False)`` converted by tf2onnx
(:func:`export_network`, the export-graph rewrites of :mod:`mrcnn_tf2.onnx_export`) and run by
:class:`OnnxMaskRCNN`, which is called like the model. Both runtimes see the same float pixels.
(``export --format onnx`` writes the other graph, uint8 images in and pasted masks out, for serving.)

Graph contract (:data:`INPUTS` -> :data:`OUTPUTS`, the model's inference dict):
* ``images [B, Hp, Wp, 3] float32`` normalised and zero-padded, ``image_info [B, 5] float32``
  (h, w, scale, H, W);
* ``num_detections [B] int32``, ``detection_boxes [B, D, 4] float32`` (network pixels),
  ``detection_classes [B, D] int32`` contiguous class indices (0 in padding),
  ``detection_scores [B, D] float32``, ``detection_masks [B, D, m, m] float32`` probabilities;
* metadata ``graph`` = ``network``, ``image_size`` = ``"Hp,Wp"``.
"""
from __future__ import annotations

import os
import tempfile
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from common.io import onnx_convert, onnx_runtime
from mrcnn_tf2 import onnx_export

GRAPH_KIND = "network"
INPUTS = ("images", "image_info")
OUTPUTS = ("num_detections", "detection_boxes", "detection_classes", "detection_scores", "detection_masks")
DTYPES = (tf.int32, tf.float32, tf.int32, tf.float32, tf.float32)


def network_function(model, padded_size: Tuple[int, int]) -> tf.types.experimental.PolymorphicFunction:
    """The ``tf.function`` tf2onnx converts: ``(images, image_info)`` -> :data:`OUTPUTS` (static dims)."""
    slots, side = model.config.detection.max_detections, model.config.mask_head.resolution
    shapes = _output_shapes(slots, side)
    specs = [tf.TensorSpec([None, *padded_size, 3], tf.float32, name=INPUTS[0]),
             tf.TensorSpec([None, 5], tf.float32, name=INPUTS[1])]

    def network(images, image_info):
        out = model({"images": images, "image_info": image_info}, training=False, custom_ops=False)
        return [tf.identity(tf.ensure_shape(out[key], shape), name=key) for key, shape in zip(OUTPUTS, shapes)]

    return tf.function(network, autograph=False, input_signature=specs)


def _output_shapes(slots: int, side: int):
    """Static shapes of :data:`OUTPUTS` (batch unknown)."""
    return ([None], [None, slots, 4], [None, slots], [None, slots], [None, slots, side, side])


def export_network(model, path: str, padded_size: Tuple[int, int], opset: int = onnx_export.MIN_OPSET) -> str:
    """Converts ``model``'s inference call at ``padded_size`` to ``path`` (checked); returns ``path``."""
    proto = onnx_export.convert(network_function(model, tuple(padded_size)), OUTPUTS, opset)
    meta = {"graph": GRAPH_KIND, "image_size": ",".join(str(int(s)) for s in padded_size),
            "input": "float32 [B, Hp, Wp, 3] normalised, padded images + [B, 5] image_info (h, w, scale, H, W)"}
    return onnx_convert.save_checked(proto, path, meta)


def export_to_temporary_file(model, padded_size: Tuple[int, int]) -> str:
    """:func:`export_network` into ``network.onnx`` of a fresh temporary folder; returns its path."""
    return export_network(model, os.path.join(tempfile.mkdtemp(prefix="onnxruntime-"), "network.onnx"), padded_size)


class OnnxMaskRCNN:
    """Stands in for the Keras ``MaskRCNN`` under ``--runtime onnxruntime`` (inference calls only).

    ``model({"images", "image_info"}, training=False)`` returns the same dict as the Keras model's;
    onnxruntime runs the graph of :func:`export_network` inside the caller's ``tf.function`` through
    ``tf.numpy_function``. ``config`` is the Keras model's (the post-processing reads it).

    Args:
      path: an ONNX file of :func:`export_network`'s contract.
      config: the ``MaskRCNNConfig`` it was exported from.
      padded_size: ``(Hp, Wp)`` the eval/infer pipeline feeds.
      threads: intra-op threads (None: one per usable core).

    Raises:
      SystemExit: ``path`` is not such a graph, or was exported at another input size (one line).
    """

    built = True
    weights = ()

    def __init__(self, path: str, config, padded_size: Tuple[int, int], threads: Optional[int] = None):
        self.path, self.config, self.padded_size = path, config, tuple(int(s) for s in padded_size)
        self.session = onnx_runtime.make_session(path, threads)
        self._check_contract()

    def _check_contract(self) -> None:
        meta = self.session.get_modelmeta().custom_metadata_map
        names = tuple(i.name for i in self.session.get_inputs())
        if meta.get("graph") != GRAPH_KIND or names != INPUTS:
            raise SystemExit(f"error: {self.path}: not a Mask R-CNN network graph (inputs {list(names)}); eval/infer "
                             "--onnx-file takes the network.onnx they export on the fly and log (export --format "
                             "onnx writes the serving graph, uint8 images in: run that one with onnxruntime directly)")
        size = tuple(int(s) for s in meta.get("image_size", "").split(",") if s)
        if size != self.padded_size:
            raise SystemExit(f"error: {self.path}: exported for input size {size}, this run feeds "
                             f"{self.padded_size}: drop --onnx-file (it is exported again) or match --image_size")

    def run(self, images: np.ndarray, image_info: np.ndarray) -> Tuple[np.ndarray, ...]:
        """float32 ``[B, Hp, Wp, 3]``, ``[B, 5]`` -> the :data:`OUTPUTS` arrays, in order."""
        feed = {INPUTS[0]: np.asarray(images, np.float32), INPUTS[1]: np.asarray(image_info, np.float32)}
        return tuple(np.asarray(v, dtype.as_numpy_dtype) for v, dtype in zip(self.session.run(list(OUTPUTS), feed), DTYPES))

    def __call__(self, inputs: Dict[str, tf.Tensor], training: bool = False, mask_logits: bool = False,
                 custom_ops: Optional[bool] = None):
        del custom_ops  # the ONNX graph was traced with plain-TF ops
        if training or mask_logits:
            raise ValueError("OnnxMaskRCNN runs inference only (training=False, mask_logits=False)")
        images = tf.cast(inputs["images"], tf.float32)
        if tuple(images.shape[1:3]) != self.padded_size:
            raise ValueError(f"{self.path} takes [B, {self.padded_size[0]}, {self.padded_size[1]}, 3] images. "
                             f"Received: images.shape={images.shape}")
        outs = tf.numpy_function(self.run, [images, tf.cast(inputs["image_info"], tf.float32)], list(DTYPES),
                                 stateful=False)
        shapes = _output_shapes(self.config.detection.max_detections, self.config.mask_head.resolution)
        return {key: tf.ensure_shape(out, shape) for key, out, shape in zip(OUTPUTS, outs, shapes)}
