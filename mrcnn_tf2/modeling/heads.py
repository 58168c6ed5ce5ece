"""Prediction heads of Mask R-CNN: RPN, Fast R-CNN box head, mask head.

Shape glossary
  B         images in the batch
  L         pyramid levels; H_l, W_l the size of level ``l``
  A         anchors per location (3)
  S         RoIs per image (512 sampled in training, 1000 proposals or 100 detections
            at inference)
  R         ROIAlign output size (7 box head, 14 mask head); F feature channels (256)
  K         classes including background (91)
  M         mask resolution, ``2 * R`` (28)

Naming follows detectron2: outputs are predictions (logits and deltas), never targets.
All outputs are cast to float32, so losses are computed in float32 under mixed precision.
Initialisation as Detectron / NVIDIA: RPN convs normal(0.01); class logits normal(0.01),
box deltas normal(0.001); mask convs and deconv MSRA (He normal, fan_out); zero biases.
Deviation: the mask *logits* 1x1 conv is normal(0.001), as detectron2's mask predictor.
NVIDIA / Detectron1 use MSRA there too, but fan_out of a 1x1 conv is the number of
classes, so its std ``sqrt(2 / K)`` grows as K shrinks: with 4 classes and unit-scale
features the initial logits were ~16 in magnitude, the mask loss ~12 instead of
``ln 2`` and its gradients swamped the rest of the network (training from scratch
diverged).
"""
from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf
import tf_keras as keras

layers = keras.layers


def _normal(stddev: float) -> dict:
    """Serialisable ``RandomNormal(stddev)`` config (a fresh instance per layer)."""
    return {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": stddev}}


# MSRAFill: normal with variance 2 / fan_out (NVIDIA's _get_stddev_equivalent_to_msra_fill).
MSRA_INIT = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}}
GLOROT_INIT = {"class_name": "GlorotUniform", "config": {}}


def _check_positive(**values) -> None:
    """Raises ``ValueError`` naming every non-positive integer argument."""
    bad = {k: v for k, v in values.items() if not isinstance(v, int) or v < 1}
    if bad:
        raise ValueError(f"Expected positive integers. Received: {bad}")


def _merge_rois(x: tf.Tensor) -> tf.Tensor:
    """``[B, S, ...] -> [B * S, ...]``; the trailing dimensions must be static."""
    return tf.reshape(x, [-1, *x.shape[2:]])


@keras.utils.register_keras_serializable(package="mrcnn_tf2")
class RpnHead(layers.Layer):
    """Shared RPN head: 3x3 conv + ReLU, then 1x1 objectness and 1x1 box deltas.

    Args:
      num_anchors: ``A``, anchors per location.
      channels: width of the shared 3x3 conv.

    Call args:
      features: ``{l: [B, H_l, W_l, F]}`` pyramid levels (the same weights on each).

    Returns:
      ``(scores, deltas)``: ``{l: [B, H_l, W_l, A] float32}`` objectness logits and
      ``{l: [B, H_l, W_l, 4 * A] float32}`` deltas (dy, dx, dh, dw) per anchor, in the
      ``(y, x, a)`` order of ``ops.anchors``.
    """

    def __init__(self, num_anchors: int = 3, channels: int = 256, **kwargs):
        super().__init__(**kwargs)
        _check_positive(num_anchors=num_anchors, channels=channels)
        self.num_anchors, self.channels = num_anchors, channels
        self.conv = layers.Conv2D(channels, 3, padding="same", activation="relu",
                                  kernel_initializer=_normal(0.01), name="rpn_conv")
        self.class_conv = layers.Conv2D(num_anchors, 1, kernel_initializer=_normal(0.01), name="rpn_class")
        self.box_conv = layers.Conv2D(4 * num_anchors, 1, kernel_initializer=_normal(0.01), name="rpn_box")

    def call(self, features: Dict[int, tf.Tensor]) -> Tuple[Dict[int, tf.Tensor], Dict[int, tf.Tensor]]:
        """See the class docstring."""
        scores, deltas = {}, {}
        for level in sorted(features):
            hidden = self.conv(features[level])
            scores[level] = tf.cast(self.class_conv(hidden), tf.float32)
            deltas[level] = tf.cast(self.box_conv(hidden), tf.float32)
        return scores, deltas

    def get_config(self):
        """Constructor arguments (round-trips through ``from_config``)."""
        return {**super().get_config(), "num_anchors": self.num_anchors, "channels": self.channels}


@keras.utils.register_keras_serializable(package="mrcnn_tf2")
class BoxHead(layers.Layer):
    """Fast R-CNN head: flatten, ``num_fcs`` x FC + ReLU, class logits and class deltas.

    Args:
      num_classes: ``K``, including background.
      fc_dims: hidden width (1024).
      num_fcs: hidden layers (2).

    Call args:
      roi_features: ``[B, S, R, R, F]`` ROIAlign features (static ``R, R, F``).

    Returns:
      ``(class_logits [B, S, K] float32, box_deltas [B, S, 4 * K] float32)``; the deltas
      of class ``k`` are ``[..., 4k:4k+4]`` as (dy, dx, dh, dw) with ``bbox_reg_weights``.
    """

    def __init__(self, num_classes: int, fc_dims: int = 1024, num_fcs: int = 2, **kwargs):
        super().__init__(**kwargs)
        _check_positive(num_classes=num_classes, fc_dims=fc_dims, num_fcs=num_fcs)
        self.num_classes, self.fc_dims, self.num_fcs = num_classes, fc_dims, num_fcs
        self.fcs = [layers.Dense(fc_dims, activation="relu", kernel_initializer=GLOROT_INIT, name=f"box_fc{i + 1}")
                    for i in range(num_fcs)]
        self.class_dense = layers.Dense(num_classes, kernel_initializer=_normal(0.01), name="class_logits")
        self.box_dense = layers.Dense(4 * num_classes, kernel_initializer=_normal(0.001), name="box_deltas")

    def call(self, roi_features: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """See the class docstring."""
        flat_size = roi_features.shape[2] * roi_features.shape[3] * roi_features.shape[4]
        x = tf.reshape(roi_features, tf.concat([tf.shape(roi_features)[:2], [flat_size]], axis=0))
        for fc in self.fcs:
            x = fc(x)
        return tf.cast(self.class_dense(x), tf.float32), tf.cast(self.box_dense(x), tf.float32)

    def get_config(self):
        """Constructor arguments (round-trips through ``from_config``)."""
        return {**super().get_config(), "num_classes": self.num_classes, "fc_dims": self.fc_dims,
                "num_fcs": self.num_fcs}


@keras.utils.register_keras_serializable(package="mrcnn_tf2")
class MaskHead(layers.Layer):
    """Mask head: ``num_convs`` x conv3x3 + ReLU, deconv 2x2/2 + ReLU, 1x1 class logits.

    Args:
      num_classes: ``K``, including background (one mask per class).
      num_convs: 3x3 convs (4).
      channels: their width and the deconv's (256).

    Call args:
      roi_features: ``[B, S, R, R, F]`` ROIAlign features (``R = 14``).

    Returns:
      ``[B, S, 2R, 2R, K] float32`` mask logits, channels-last; the loss and the
      inference path pick the channel of the GT / detected class.
    """

    def __init__(self, num_classes: int, num_convs: int = 4, channels: int = 256, **kwargs):
        super().__init__(**kwargs)
        _check_positive(num_classes=num_classes, num_convs=num_convs, channels=channels)
        self.num_classes, self.num_convs, self.channels = num_classes, num_convs, channels
        self.convs = [layers.Conv2D(channels, 3, padding="same", activation="relu", kernel_initializer=MSRA_INIT,
                                    name=f"mask_conv{i + 1}") for i in range(num_convs)]
        self.deconv = layers.Conv2DTranspose(channels, 2, strides=2, activation="relu",
                                             kernel_initializer=MSRA_INIT, name="mask_deconv")
        self.logits = layers.Conv2D(num_classes, 1, kernel_initializer=_normal(0.001), name="mask_logits")

    def call(self, roi_features: tf.Tensor) -> tf.Tensor:
        """See the class docstring."""
        x = _merge_rois(roi_features)
        for conv in self.convs:
            x = conv(x)
        x = self.logits(self.deconv(x))
        shape = tf.concat([tf.shape(roi_features)[:2], x.shape[1:]], axis=0)
        return tf.cast(tf.reshape(x, shape), tf.float32)

    def get_config(self):
        """Constructor arguments (round-trips through ``from_config``)."""
        return {**super().get_config(), "num_classes": self.num_classes, "num_convs": self.num_convs,
                "channels": self.channels}
