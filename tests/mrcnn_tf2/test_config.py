"""Mask R-CNN config: NVIDIA defaults, dict/JSON round trip, dotted-name overrides."""
import dataclasses
import json

import pytest

from mrcnn_tf2.config import MaskRCNNConfig, parse_overrides, replace_flat


def test_defaults_are_nvidias():
    c = MaskRCNNConfig()
    assert (c.num_classes, c.image_size) == (91, (832, 1344))
    assert (c.anchors.min_level, c.anchors.max_level, c.anchors.num_scales, c.anchors.anchor_scale) == (2, 6, 1, 8.0)
    assert c.anchors.aspect_ratios == ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))
    assert c.anchors.anchors_per_location == 3
    assert (c.rpn.positive_threshold, c.rpn.negative_threshold) == (0.7, 0.3)
    assert (c.rpn.batch_size_per_image, c.rpn.positive_fraction, c.rpn.min_size) == (256, 0.5, 0.0)
    assert c.rpn.proposal_args(True) == {"pre_nms_topk": 2000, "post_nms_topk": 1000,
                                         "nms_threshold": 0.7, "min_size": 0.0}
    assert c.rpn.proposal_args(False) == {"pre_nms_topk": 1000, "post_nms_topk": 1000,
                                          "nms_threshold": 0.7, "min_size": 0.0}
    s = c.roi_sampler
    assert (s.batch_size_per_image, s.positive_fraction, s.num_fg_slots) == (512, 0.25, 128)
    assert (s.fg_threshold, s.bg_threshold_hi, s.bg_threshold_lo) == (0.5, 0.5, 0.0)
    assert (c.roi_align.box_output_size, c.roi_align.mask_output_size, c.roi_align.sampling_ratio,
            c.roi_align.aligned) == (7, 14, 2, False)
    assert (c.box_head.fc_dims, c.box_head.num_fcs, c.box_head.bbox_reg_weights) == (1024, 2, (10.0, 10.0, 5.0, 5.0))
    assert (c.mask_head.num_convs, c.mask_head.channels, c.mask_head.resolution) == (4, 256, 28)
    assert (c.detection.max_detections, c.detection.nms_threshold, c.detection.score_threshold) == (100, 0.5, 0.0)
    assert (c.backbone.depth, c.backbone.finetune_bn, c.backbone.freeze_at, c.backbone.width_multiplier) == \
        (50, False, 2, 1.0)


def test_dict_and_json_round_trip():
    config = MaskRCNNConfig().override(**{"backbone.width_multiplier": 0.25, "num_classes": 2})
    assert MaskRCNNConfig.from_dict(config.to_dict()) == config
    restored = MaskRCNNConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert restored.anchors.aspect_ratios == ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))  # lists -> tuples
    assert hash(restored) == hash(config)


def test_override_by_dotted_name():
    config = MaskRCNNConfig().override(**{"rpn.pre_nms_topk_train": 500, "image_size": [128, 256],
                                          "detection.score_threshold": 0}, backbone__finetune_bn=True)
    assert config.rpn.pre_nms_topk_train == 500
    assert config.rpn.post_nms_topk_train == 1000  # untouched siblings keep their value
    assert config.image_size == (128, 256)
    assert config.backbone.finetune_bn is True
    assert isinstance(config.detection.score_threshold, float)
    assert replace_flat(MaskRCNNConfig(), {"rpn.pre_nms_topk_train": 500}).rpn == config.rpn


def test_flat_dict_names_every_leaf():
    flat = MaskRCNNConfig().flat_dict()
    assert flat["rpn.pre_nms_topk_train"] == 2000 and flat["roi_align.aligned"] is False
    assert replace_flat(MaskRCNNConfig(), flat) == MaskRCNNConfig()


def test_bad_overrides_are_rejected():
    with pytest.raises(ValueError, match="rpn.pre_nms_topk_train"):
        MaskRCNNConfig().override(**{"rpn.pre_nms_top_k_train": 1})
    with pytest.raises(ValueError, match="Need 2 <= anchors.min_level"):
        MaskRCNNConfig().override(**{"anchors.min_level": 1})
    with pytest.raises(ValueError, match="multiples of 32"):
        MaskRCNNConfig().override(image_size=(100, 128))
    with pytest.raises(ValueError, match="Unknown"):
        MaskRCNNConfig.from_dict({"rpn": {"bogus": 1}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        MaskRCNNConfig().num_classes = 2


def test_parse_overrides_reads_literals():
    parsed = parse_overrides(["rpn.min_size=1.5", "backbone.finetune_bn=True", "image_size=64,128",
                              "name=plain text"])
    assert parsed == {"rpn.min_size": 1.5, "backbone.finetune_bn": True, "image_size": (64, 128),
                      "name": "plain text"}
    with pytest.raises(ValueError, match="name=value"):
        parse_overrides(["no_equals_sign"])
