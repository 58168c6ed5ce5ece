"""The one experiment registry: every name is a complete experiment that trains, writes config.json and is
re-read by eval/infer; the ResNet-50 classifier and the EfficientNet-FPN Mask R-CNN learn through main.py;
a third model of an existing task is one registered function.

Each name trains one step at a shrunk width (``--config`` on its own backbone's fields): the full-size
architectures are built elsewhere (B0-B7 against keras.applications in ``tests/backbones``, every
classifier's forward/backward in ``tests/efficientnet_tf2/test_model.py``).
"""
import dataclasses
import glob
import json
import os

import numpy as np
import pytest
from PIL import Image

import main as entry
from backbones.configs import efficientnet
from common.command import registry
from common.command.config import from_dict
from dataset.make_synthetic_imagefolder import make_imagefolder
from efficientnet_tf2.experiments import ClassificationExperiment, ClassifierConfig, classification

SHRINK = {"resnet": ["backbone.width_multiplier=0.125"],
          "efficientnet": ["backbone.width_coefficient=0.25", "backbone.depth_coefficient=0.25"]}
SMALL_DETECTOR = ["rpn.pre_nms_topk_train=100", "rpn.post_nms_topk_train=50", "rpn.pre_nms_topk_test=50",
                  "rpn.post_nms_topk_test=20", "roi_sampler.batch_size_per_image=16", "detection.max_detections=10",
                  "fpn.channels=32", "rpn.channels=32", "mask_head.channels=16", "box_head.fc_dims=64"]


def _family(name):
    return registry.get_family(name).name


def _backbone_kind(name):
    return registry.get_experiment(name).task.model.backbone.kind


def _records(workspace, key, epochs_only=False):
    """Values of ``key`` in the run's DLLogger lines (``epochs_only``: the per-epoch summaries)."""
    lines = [json.loads(line[5:]) for line in open(os.path.join(workspace, "raport.json")) if line.startswith("DLLL")]
    return [r["data"][key] for r in lines if key in r.get("data", {})
            and (not epochs_only or len(r.get("step") or ()) == 1)]


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("photo") / "photo.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 120, 3), dtype=np.uint8)).save(path)
    return path


def test_every_name_is_one_complete_experiment():
    names = registry.list_models(include_references=True)
    assert {f"efficientnet-b{i}" for i in range(8)} | {"resnet50", "mask-rcnn", "mask-rcnn-torchvision",
                                                       "mask-rcnn-efficientnet-b0-fpn"} <= set(names)
    for name in names:
        experiment = registry.get_experiment(name, benchmark=True)
        assert experiment.model == name
        assert isinstance(experiment, registry.get_family(name, benchmark=True).experiment_class)
        again = from_dict(type(experiment), json.loads(json.dumps(experiment.to_dict())))
        assert again == experiment, name  # what config.json holds is the whole experiment
    assert registry.get_experiment("efficientnet-b0") is not registry.get_experiment("efficientnet-b0")


#: one classifier per backbone kind and per model kind runs eval on its checkpoint; for the others (B1-B7 differ
#: from B0 only by scaling numbers) eval's parse re-reads config.json into the experiment train wrote.
EVALUATED = ("efficientnet-b0", "efficientnet-widese-b0", "efficientnet-quant-b0", "resnet50")


@pytest.mark.parametrize("name", [n for n in registry.list_models() if _family(n) == "classification"])
def test_each_classifier_trains_a_step_and_eval_rereads_config_json(name, tmp_path, capsys):
    from common.command import cli

    work = str(tmp_path / "run")
    assert entry.main(["train", "--model", name, "--data-backend", "synthetic", "--workspace", work,
                       "--image-size", "32", "--num-classes", "3", "-b", "2", "--epochs", "1", "--steps-per-epoch",
                       "1", "--no-eval", "--config", *SHRINK[_backbone_kind(name)]]) == 0
    config = json.load(open(os.path.join(work, "config.json")))
    assert config["model"] == name and config["task"]["model"]["num_classes"] == 3
    assert np.isfinite(_records(work, "train.loss")).all()
    evaluate = ["eval", "--workspace", work, "--data-backend", "synthetic", "--eval-steps", "1"]
    reread = cli.parse(["eval", "--workspace", work]).experiment  # no --model / --num-classes: config.json's run
    assert json.loads(json.dumps(reread.to_dict())) == config
    if name in EVALUATED:
        capsys.readouterr()
        assert entry.main(evaluate) == 0
        assert "val.top1" in capsys.readouterr().out


@pytest.mark.parametrize("name", [n for n in registry.list_models() if _family(n) == "mask-rcnn"])
def test_each_detector_trains_a_step_and_infer_rereads_config_json(name, tmp_path, photo):
    work = str(tmp_path / "run")
    size = ["--image-size", "128"] if name != "mask-rcnn-torchvision" else ["--image-size", "128", "160"]
    # a fine-tuning recipe refuses random weights (tests/common/test_user_errors.py); this shrunk network has none
    own_weights = ["task.needs_weights=false"] if registry.get_experiment(name).task.needs_weights else []
    assert entry.main(["train", "--model", name, "--use-synthetic-data", "--workspace", work, *size, "--epochs", "1",
                       "--steps-per-epoch", "1", "-b", "1", "--no-eval", "--config", *SMALL_DETECTOR,
                       *SHRINK[_backbone_kind(name)], *own_weights]) == 0
    config = json.load(open(os.path.join(work, "config.json")))
    assert config["model"] == name and np.isfinite(_records(work, "train.loss")).all()
    out = str(tmp_path / "pred")
    assert entry.main(["infer", "--workspace", work, photo, "--output-dir", out]) == 0
    assert len(glob.glob(os.path.join(out, "*_pred.png"))) == 1


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    make_imagefolder(root, num_classes=4, train_per_class=8, val_per_class=2, image_size=40, seed=2)
    return root


def _loss_falls(name, data, work, *flags):
    """Mean training loss of the last epoch below the first's (same images every epoch)."""
    assert entry.main(["train", "--model", name, data, "--workspace", work, "--image-size", "32", "-b", "8",
                       "--epochs", "4", "--no-eval", "--augmentation", "none", "--seed", "1", "--log-every", "1",
                       *flags]) == 0
    return _records(work, "train.loss", epochs_only=True)


def test_resnet50_classifier_learns_infers_and_exports_through_main(shapes, tmp_path, capsys):
    """NVIDIA's ResNet-50 v1.5 recipe (SGD, cosine) on a narrow ResNet-50 (no warm-up at this size), then the
    classification task's infer and export, as for EfficientNet: no ResNet-specific code anywhere."""
    work = str(tmp_path / "resnet")
    losses = _loss_falls("resnet50", shapes, work, "--lr", "0.05", "--lr-batch", "8", "--warmup", "0",
                         "--label-smoothing", "0", "--config", "backbone.width_multiplier=0.25")
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    config = json.load(open(os.path.join(work, "config.json")))
    assert config["task"]["model"]["backbone"]["kind"] == "resnet" and config["task"]["optimizer"] == "sgd"
    image = sorted(glob.glob(os.path.join(shapes, "val", "*", "*")))[0]
    capsys.readouterr()
    assert entry.main(["infer", "--workspace", work, image, "--top-k", "2"]) == 0
    assert json.load(open(os.path.join(work, "predictions", "predictions.json")))[0]["top_k"][0]["class"] in \
        os.listdir(os.path.join(shapes, "train"))
    assert entry.main(["export", "--workspace", work, "--verify", image]) == 0
    assert "verified 1 image(s)" in capsys.readouterr().out


def test_mask_rcnn_on_efficientnet_b0_fpn_learns_through_main(tmp_path):
    """The registered EfficientNet-B0 FPN detector lowers its loss on the built-in shapes."""
    from dataset.make_synthetic_shapes import make_dataset

    data = str(tmp_path / "shapes")
    make_dataset(data, num_train=8, num_val=2, image_size=128, seed=0)
    work = str(tmp_path / "run")
    assert entry.main(["train", "--model", "mask-rcnn-efficientnet-b0-fpn", "--data-dir", data, "--workspace", work,
                       "--image-size", "128", "--epochs", "4", "-b", "2", "--no-eval", "--optimizer", "adam",
                       "--learning-rate-values", "1e-3", "--learning-rate-boundaries", "0", "--init-learning-rate",
                       "0", "--log-every", "1", "--seed", "1", "--config", *SMALL_DETECTOR,
                       "backbone.width_coefficient=0.5"]) == 0
    losses = _records(work, "train.loss", epochs_only=True)
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses


def test_a_third_model_of_an_existing_task_is_one_registered_function(shapes, tmp_path, capsys):
    """No family code: one function returning a complete experiment, and main.py trains and evaluates it."""
    @registry.register_experiment("efficientnet-pico", "classification")
    def efficientnet_pico() -> ClassificationExperiment:
        backbone = efficientnet("b0", width_coefficient=0.25, depth_coefficient=0.25, head_filters=64)
        experiment = classification("efficientnet-pico", ClassifierConfig(backbone=backbone, dropout_rate=0.0),
                                    {"task.lr": 0.01, "task.lr_batch": 8, "task.warmup_epochs": 0,
                                     "trainer.epochs": 2, "trainer.batch_size": 8})
        return dataclasses.replace(experiment, data=dataclasses.replace(experiment.data, image_size=32))

    try:
        work = str(tmp_path / "pico")
        assert entry.main(["train", "--model", "efficientnet-pico", shapes, "--workspace", work]) == 0
        assert json.load(open(os.path.join(work, "config.json")))["task"]["model"]["backbone"]["head_filters"] == 64
        capsys.readouterr()
        assert entry.main(["eval", "--workspace", work, shapes]) == 0
        assert "val.top1" in capsys.readouterr().out
    finally:
        registry.unregister_experiment("efficientnet-pico")
