"""backbones.build: every backbone returns ``{level: tensor}`` with integer levels, so any feeds the FPN (the
registered ``mask-rcnn-efficientnet-b0-fpn`` trains, learns and infers in ``tests/common/test_registry.py``)."""
import tensorflow as tf

from backbones.build import build_backbone
from backbones.configs import ResNetConfig, efficientnet


def test_resnet_and_efficientnet_backbones_return_integer_levels():
    images = tf.zeros([1, 128, 128, 3])
    for config in (ResNetConfig(width_multiplier=0.25), efficientnet("b0")):
        features = build_backbone(config)(images)
        assert sorted(features) == [2, 3, 4, 5], config.kind
        assert [features[level].shape[1] for level in (2, 3, 4, 5)] == [32, 16, 8, 4], config.kind
