"""The classifier as exported to TFLite and ONNX: the same weights, a graph without dynamic-shape arithmetic.

Keras' ``Dense`` on a rank-4 input (the squeeze-excitation layers see ``[B, 1, 1, C]``) runs ``tensordot``, whose
reshapes compute their shapes from ``tf.shape`` at run time when the batch is dynamic: in B0's TFLite file that
is 64 GATHER, 64 REDUCE_PROD, 32 SHAPE, 32 PACK and 32 CONCATENATION ops that no delegate takes, so XNNPACK's
graph is cut into one partition per SE block and each call pays the hand-overs. :func:`for_export` rebuilds the
model (``clone_model``) with those layers as :class:`FlatDense`: ``[B, 1, 1, C]`` reshaped to ``[B, C]`` by a
constant ``[-1, C]``, one matmul, reshaped back; the weights are copied, so the outputs are the same numbers.

    exportable = for_export(model)   # a new tf_keras model; ``model`` is untouched

The input normalisation ``(x - mean) / std`` (per channel) is :func:`normalize_1x1` in a TFLite file: one 1x1
depthwise convolution instead of a SUB and a MUL, which TFLite's int8 graph ran as two broadcast int8 ops over the
whole image (at batch 1, B0 224 px: 7.5 % more int8 throughput without them, paired rounds, RESULTS.md).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from efficientnet_tf2.preprocessing import MEAN_RGB, STDDEV_RGB


class FlatDense(keras.layers.Dense):
    """``Dense`` on ``[B, *inner, C]`` with static ``inner``: reshaped to ``[B * prod(inner), C]`` by a constant
    shape, so no shape is computed at run time. Same weights, same outputs as ``Dense``."""

    def call(self, inputs):
        inner = inputs.shape[1:-1]
        flat = tf.reshape(inputs, [-1, inputs.shape[-1]])
        return tf.reshape(super().call(flat), [-1, *inner, self.units])


def _needs_flat(layer) -> bool:
    shape = getattr(layer, "input_shape", None)
    return (type(layer) is keras.layers.Dense and isinstance(shape, tuple) and len(shape) > 2
            and all(d is not None for d in shape[1:]))


def exportable_copy(layer):
    """A fresh copy of ``layer`` (no weights) for the export graph: :class:`FlatDense` for a rank>2 ``Dense``."""
    if _needs_flat(layer):
        return FlatDense.from_config(layer.get_config())
    return layer.__class__.from_config(layer.get_config())


def for_export(model):
    """``model`` with every rank>2 ``Dense`` as :class:`FlatDense` (weights copied); ``model`` itself when it has
    none or is not a functional model (subclassed and quantization-aware models are exported as they are)."""
    if not isinstance(model, keras.Model) or not getattr(model, "_is_graph_network", False):
        return model
    if not any(_needs_flat(layer) for layer in model.layers):
        return model

    rebuilt = keras.models.clone_model(model, clone_function=exportable_copy)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def normalize_1x1(images):
    """float ``[B, S, S, 3]`` pixels -> ``(images - MEAN_RGB) / STDDEV_RGB`` as a 1x1 depthwise convolution (weight
    ``1 / std``, bias ``-mean / std`` per channel): :func:`~efficientnet_tf2.preprocessing.normalize`'s numbers to
    float rounding, one op in a TFLite graph."""
    scale = (1.0 / np.float32(STDDEV_RGB)).astype(np.float32)
    kernel = tf.constant(scale.reshape(1, 1, 3, 1))
    bias = tf.constant((-np.float32(MEAN_RGB) * scale).astype(np.float32))
    return tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "VALID") + bias
