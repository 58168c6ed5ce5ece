"""Backbone configs are a tagged union: ``kind`` names the member in config.json and on the command line."""
import json

import pytest

from backbones.configs import EfficientNetConfig, ResNetConfig, backbone_from_dict, efficientnet
from common.command.config import from_dict, replace_flat
from mrcnn_tf2.config import MaskRCNNConfig


@pytest.mark.parametrize("backbone", [ResNetConfig(depth=101, stride_in_1x1=False), efficientnet("b3", wide_se=True)])
def test_json_round_trip_keeps_the_member(backbone):
    config = MaskRCNNConfig(backbone=backbone)
    again = from_dict(MaskRCNNConfig, json.loads(json.dumps(config.to_dict())))
    assert again == config and type(again.backbone) is type(backbone)
    assert backbone_from_dict(json.loads(json.dumps(config.to_dict()))["backbone"]) == backbone


def test_kind_switches_the_member_then_the_other_fields_apply():
    config = replace_flat(MaskRCNNConfig(), {"backbone.kind": "efficientnet", "backbone.width_coefficient": 1.1})
    assert config.backbone == EfficientNetConfig(width_coefficient=1.1)
    back = replace_flat(config, {"backbone.kind": "resnet", "backbone.depth": 152})
    assert back.backbone == ResNetConfig(depth=152)


def test_a_field_of_another_member_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown config field 'backbone.width_coefficient'.*backbone.depth"):
        replace_flat(MaskRCNNConfig(), {"backbone.width_coefficient": 2.0})
    with pytest.raises(ValueError, match="Unknown kind 'vit'"):
        replace_flat(MaskRCNNConfig(), {"backbone.kind": "vit"})
    with pytest.raises(ValueError, match="depth must be 50, 101 or 152"):
        ResNetConfig(depth=34)
