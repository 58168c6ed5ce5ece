"""The classifier of the classification task: any backbone, pooling, dropout, a Dense layer.

Layers are applied functionally to one input, so the model is flat (layer names of the backbone,
e.g. ``block3b_expand_conv`` or ``conv4_block2_1_conv``, then ``avg_pool``, ``top_dropout``,
``predictions``, ``logits``): checkpoints, NGC weight maps and TF-MOT quantization see the same
layers as before backbones were shared.

Shapes: B batch, S input side. Inputs are normalised float images ``[B, S, S, 3]``; the model
returns float32 logits ``[B, num_classes]`` (float32 even under mixed precision).
"""
from __future__ import annotations

import tf_keras as keras

from backbones.build import backbone_features
from common.training.initializers import DENSE_INIT
from efficientnet_tf2.experiments import ClassifierConfig

layers = keras.layers


def build_classifier(config: ClassifierConfig, input_shape=None, name: str = "classifier") -> keras.Model:
    """Backbone -> its deepest level -> global average pool -> dropout -> Dense -> float32 logits.

    Args:
      config: backbone and head.
      input_shape: ``(S, S, 3)``; default ``(resolution, resolution, 3)`` of the backbone.
      name: model name.

    Returns:
      A functional ``keras.Model`` mapping ``[B, S, S, 3]`` to ``[B, num_classes]`` float32 logits.
    """
    shape = input_shape or (config.resolution, config.resolution, 3)
    inputs = keras.Input(shape=shape, name="image")
    features = backbone_features(inputs, config.backbone)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(features[max(features)])
    if config.dropout_rate > 0:
        x = layers.Dropout(config.dropout_rate, name="top_dropout")(x)
    x = layers.Dense(config.num_classes, kernel_initializer=DENSE_INIT, name="predictions")(x)
    logits = layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)
