"""Both backbones return ``{level: tensor}`` with integer levels, so either feeds the FPN:
Mask R-CNN on an EfficientNet-B0 backbone, chosen through the config, trains a step and infers."""
import glob
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

import main as entry
from mrcnn_tf2.config import BackboneConfig
from mrcnn_tf2.modeling.mask_rcnn import build_backbone

SMALL = ["--image-size", "128", "--config", "rpn.pre_nms_topk_train=100", "rpn.post_nms_topk_train=50",
         "rpn.pre_nms_topk_test=50", "rpn.post_nms_topk_test=20", "roi_sampler.batch_size_per_image=16",
         "detection.max_detections=10", "fpn.channels=32", "rpn.channels=32", "mask_head.channels=16",
         "box_head.fc_dims=64"]


def test_resnet_and_efficientnet_backbones_return_integer_levels():
    images = tf.zeros([1, 128, 128, 3])
    for config in (BackboneConfig(width_multiplier=0.25), BackboneConfig(name="efficientnet-b0")):
        features = build_backbone(config)(images)
        assert sorted(features) == [2, 3, 4, 5], config.name
        assert [features[level].shape[1] for level in (2, 3, 4, 5)] == [32, 16, 8, 4], config.name


def test_mask_rcnn_on_an_efficientnet_backbone_trains_and_infers(tmp_path, capsys):
    work = str(tmp_path / "run")
    assert entry.main(["train", "--model", "mask-rcnn", "--use-synthetic-data", "--workspace", work,
                       "--epochs", "1", "--steps-per-epoch", "1", "-b", "1", "--no-eval", "--log-every", "1",
                       *SMALL, "backbone.name=efficientnet-b0", "backbone.width_multiplier=0.5"]) == 0
    config = json.load(open(os.path.join(work, "config.json")))
    assert config["task"]["model"]["backbone"]["name"] == "efficientnet-b0"
    records = [json.loads(line[5:]) for line in open(os.path.join(work, "raport.json")) if line.startswith("DLLL")]
    assert any(np.isfinite(r["data"].get("train.loss", np.nan)) for r in records)
    image = str(tmp_path / "photo.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 120, 3), dtype=np.uint8)).save(image)
    capsys.readouterr()
    assert entry.main(["infer", "--workspace", work, image, "--output-dir", str(tmp_path / "pred")]) == 0
    assert "efficientnet" in json.dumps(config["task"]["model"]["backbone"])
    assert len(glob.glob(str(tmp_path / "pred" / "*_pred.png"))) == 1
    assert isinstance(json.load(open(tmp_path / "pred" / "detections.json")), list)
