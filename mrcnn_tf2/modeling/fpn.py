"""Feature Pyramid Network (Lin et al., 2017) as in Detectron / NVIDIA's Mask R-CNN.

Shape glossary
  B         images in the batch
  H_l, W_l  size of level ``l`` (stride ``2**l``); ``H_l = 2 * H_{l+1}`` is required for
            the top-down path, i.e. the input image is a multiple of ``2**backbone_max``
  C_l       backbone channels of level ``l``; F the FPN channels (256)

Wiring, for ``l = backbone_max .. min_level``:
  ``lateral_l = conv1x1(C_l)``; ``top_down_l = lateral_l + upsample2x_nearest(top_down_{l+1})``;
  ``P_l = conv3x3(top_down_l)``. Levels above the backbone are ``P_{l+1} =
  max_pool(P_l, size=1, stride=2)``, i.e. subsampling (Detectron's ``LastLevelMaxPool``;
  NVIDIA's ``MaxPool2D(pool_size=1, strides=2)``).
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf
import tf_keras as keras

layers = keras.layers

# Caffe2 XavierFill / detectron2 c2_xavier_fill: uniform, variance 1 / fan_in.
XAVIER_INIT = {"class_name": "VarianceScaling",
               "config": {"scale": 1.0, "mode": "fan_in", "distribution": "uniform"}}


@keras.utils.register_keras_serializable(package="mrcnn_tf2")
class Fpn(layers.Layer):
    """Backbone features ``{min_level..backbone_max}`` -> pyramid ``{min_level..max_level}``.

    Args:
      min_level: lowest output level (2).
      max_level: highest output level (6); levels above ``backbone_max`` are pooled.
      backbone_max: highest backbone level (5: C5).
      channels: ``F``, channels of every output level.

    Call args:
      features: ``{l: [B, H_l, W_l, C_l]}`` for ``l`` in ``min_level..backbone_max``
        (extra keys such as C1 are ignored).

    Returns:
      ``{l: [B, H_l, W_l, F]}`` for ``l`` in ``min_level..max_level``, compute dtype.
    """

    def __init__(self, min_level: int = 2, max_level: int = 6, backbone_max: int = 5,
                 channels: int = 256, **kwargs):
        super().__init__(**kwargs)
        if not min_level <= backbone_max <= max_level or channels < 1:
            raise ValueError("Need min_level <= backbone_max <= max_level and channels >= 1. Received: "
                             f"min_level={min_level}, backbone_max={backbone_max}, max_level={max_level}, "
                             f"channels={channels}")
        self.min_level, self.max_level = min_level, max_level
        self.backbone_max, self.channels = backbone_max, channels
        backbone_levels = range(min_level, backbone_max + 1)  # string keys: checkpointable
        self.lateral = {f"p{l}": layers.Conv2D(channels, 1, kernel_initializer=XAVIER_INIT, name=f"lateral_p{l}")
                        for l in backbone_levels}
        self.output_convs = {f"p{l}": layers.Conv2D(channels, 3, padding="same", kernel_initializer=XAVIER_INIT,
                                              name=f"output_p{l}") for l in backbone_levels}
        self.upsample = layers.UpSampling2D(2, interpolation="nearest", name="upsample")
        self.pool = layers.MaxPooling2D(pool_size=1, strides=2, name="subsample")

    def call(self, features: Dict[int, tf.Tensor]) -> Dict[int, tf.Tensor]:
        """See the class docstring."""
        missing = [l for l in range(self.min_level, self.backbone_max + 1) if l not in features]
        if missing:
            raise ValueError(f"FPN input lacks levels {missing}. Received: levels={sorted(features)}")
        top_down = self.lateral[f"p{self.backbone_max}"](features[self.backbone_max])
        outputs = {self.backbone_max: self.output_convs[f"p{self.backbone_max}"](top_down)}
        for level in range(self.backbone_max - 1, self.min_level - 1, -1):
            top_down = self.lateral[f"p{level}"](features[level]) + self.upsample(top_down)
            outputs[level] = self.output_convs[f"p{level}"](top_down)
        for level in range(self.backbone_max + 1, self.max_level + 1):
            outputs[level] = self.pool(outputs[level - 1])
        return dict(sorted(outputs.items()))

    def get_config(self):
        """Constructor arguments (round-trips through ``from_config``)."""
        return {**super().get_config(), "min_level": self.min_level, "max_level": self.max_level,
                "backbone_max": self.backbone_max, "channels": self.channels}
