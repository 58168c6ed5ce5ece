"""Both backbones return ``{level: tensor}`` with integer levels, so either feeds the FPN:
``mask-rcnn-efficientnet-b0-fpn`` (a registered experiment, no family code) trains a step and infers."""
import glob
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

import main as entry
from backbones.build import build_backbone
from backbones.configs import ResNetConfig, efficientnet

SMALL = ["--image-size", "128", "--config", "rpn.pre_nms_topk_train=100", "rpn.post_nms_topk_train=50",
         "rpn.pre_nms_topk_test=50", "rpn.post_nms_topk_test=20", "roi_sampler.batch_size_per_image=16",
         "detection.max_detections=10", "fpn.channels=32", "rpn.channels=32", "mask_head.channels=16",
         "box_head.fc_dims=64"]


def test_resnet_and_efficientnet_backbones_return_integer_levels():
    images = tf.zeros([1, 128, 128, 3])
    for config in (ResNetConfig(width_multiplier=0.25), efficientnet("b0")):
        features = build_backbone(config)(images)
        assert sorted(features) == [2, 3, 4, 5], config.kind
        assert [features[level].shape[1] for level in (2, 3, 4, 5)] == [32, 16, 8, 4], config.kind


def test_mask_rcnn_on_an_efficientnet_backbone_trains_and_infers(tmp_path, capsys):
    work = str(tmp_path / "run")
    assert entry.main(["train", "--model", "mask-rcnn-efficientnet-b0-fpn", "--use-synthetic-data", "--workspace",
                       work, "--epochs", "1", "--steps-per-epoch", "1", "-b", "1", "--no-eval", "--log-every", "1",
                       *SMALL, "backbone.width_coefficient=0.5"]) == 0
    config = json.load(open(os.path.join(work, "config.json")))
    assert config["task"]["model"]["backbone"]["kind"] == "efficientnet"
    records = [json.loads(line[5:]) for line in open(os.path.join(work, "raport.json")) if line.startswith("DLLL")]
    assert any(np.isfinite(r["data"].get("train.loss", np.nan)) for r in records)
    image = str(tmp_path / "photo.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 120, 3), dtype=np.uint8)).save(image)
    capsys.readouterr()
    assert entry.main(["infer", "--workspace", work, image, "--output-dir", str(tmp_path / "pred")]) == 0
    assert "efficientnet" in json.dumps(config["task"]["model"]["backbone"])
    assert len(glob.glob(str(tmp_path / "pred" / "*_pred.png"))) == 1
    assert isinstance(json.load(open(tmp_path / "pred" / "detections.json")), list)
