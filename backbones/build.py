"""One entry point from a backbone config to its layers: ``{level: tensor}`` for any architecture."""
from __future__ import annotations

from typing import Dict

import tf_keras as keras

from backbones.configs import BackboneConfig, EfficientNetConfig, ResNetConfig

#: pyramid levels every backbone returns (stride ``2**level``).
LEVELS = (2, 3, 4, 5)


def backbone_features(inputs, config: BackboneConfig) -> Dict[int, "keras.KerasTensor"]:
    """The backbone's layers applied to ``inputs [B, H, W, 3]`` (functional, flat layer names).

    Returns:
      ``{level: [B, H / 2**level, W / 2**level, C_level]}`` for at least levels 2..5.
    """
    if isinstance(config, ResNetConfig):
        from backbones.resnet import resnet_features

        return resnet_features(inputs, config)
    if isinstance(config, EfficientNetConfig):
        from backbones.efficientnet import efficientnet_features

        return efficientnet_features(inputs, config)
    raise TypeError(f"Not a backbone config: {type(config).__name__}. Expected one of ResNetConfig, "
                    "EfficientNetConfig")


def build_backbone(config: BackboneConfig, input_shape=(None, None, 3), name: str = "backbone") -> keras.Model:
    """A ``keras.Model``: images ``[B, H, W, 3]`` -> ``{2: C2, 3: C3, 4: C4, 5: C5}``."""
    inputs = keras.Input(shape=input_shape, name="image")
    features = backbone_features(inputs, config)
    return keras.Model(inputs, {level: features[level] for level in LEVELS}, name=name)
