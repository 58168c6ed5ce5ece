"""End-to-end training through ``main.py``: exact resume and convergence.

Both tests use the real efficientnet-b0 architecture (5.3 M parameters at
1000 classes) at reduced resolution on the generated shapes dataset.
"""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import main as cli
from common.training.trainer import Trainer
from dataset.make_synthetic_imagefolder import make_imagefolder


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tiny_shapes"))
    make_imagefolder(root, num_classes=4, train_per_class=6, val_per_class=2, image_size=40, seed=1)
    return root


def _train_argv(data, workspace, epochs, *extra):
    return ["train", "--model", "efficientnet-b0", data, "--workspace", workspace, "--image-size", "32",
            "--epochs", str(epochs), "-b", "8", "--lr", "0.002", "--lr-batch", "8", "--warmup", "1",
            "--mixup", "0.2", "--seed", "3", "--log-every", "100", *extra]


def _checkpoint_values(workspace):
    reader = tf.train.load_checkpoint(os.path.join(workspace, "checkpoint-latest", "ckpt"))
    names = [n for n in reader.get_variable_to_shape_map() if not n.startswith("_CHECKPOINTABLE")]
    return {n: reader.get_tensor(n) for n in names}


def test_resume_after_interruption_matches_uninterrupted_run(tiny_shapes, tmp_path, monkeypatch):
    full, split = str(tmp_path / "full"), str(tmp_path / "split")
    assert cli.main(_train_argv(tiny_shapes, full, 2)) == 0

    original = Trainer._checkpoint

    def checkpoint_then_crash(self, metrics):
        original(self, metrics)
        raise KeyboardInterrupt("simulated interruption after epoch 1")

    monkeypatch.setattr(Trainer, "_checkpoint", checkpoint_then_crash)
    with pytest.raises(KeyboardInterrupt):
        cli.main(_train_argv(tiny_shapes, split, 2))
    monkeypatch.setattr(Trainer, "_checkpoint", original)
    assert json.load(open(os.path.join(split, "checkpoint-latest", "meta.json")))["epoch"] == 1
    assert cli.main(_train_argv(tiny_shapes, split, 2, "--resume", split)) == 0

    expected, resumed = _checkpoint_values(full), _checkpoint_values(split)
    assert expected.keys() == resumed.keys()
    model_vars = [n for n in expected if n.startswith("model/")]
    assert len(model_vars) > 300 and any("optimizer/" in n for n in expected)
    for name in expected:
        np.testing.assert_allclose(resumed[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)

    # The trained workspace serves the other modes: eval, infer and a verified export.
    image = sorted(glob.glob(os.path.join(tiny_shapes, "val", "*", "*")))[0]
    assert cli.main(["eval", "--model", "efficientnet-b0", tiny_shapes, "--workspace", full, "-b", "4"]) == 0
    assert cli.main(["infer", "--model", "efficientnet-b0", "--workspace", full, "--checkpoint",
                     os.path.join(full, "model_best"), image]) == 0
    assert cli.main(["export", "--model", "efficientnet-b0", "--workspace", full, "--checkpoint",
                     os.path.join(full, "model_best"), "--verify", image]) == 0
    assert os.path.isfile(os.path.join(full, "saved_model", "saved_model.pb"))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    make_imagefolder(root, num_classes=10, train_per_class=60, val_per_class=20, image_size=64, seed=0)
    return root


def test_efficientnet_b0_converges_on_generated_shapes(shapes, tmp_path):
    """Real B0 at 64 px on 10 shape/colour classes reaches >= 90 % val top-1."""
    workspace = str(tmp_path / "run")
    argv = ["train", "--model", "efficientnet-b0", shapes, "--workspace", workspace, "--image-size", "64",
            "--epochs", "14", "-b", "32", "--optimizer", "adam", "--lr", "0.002", "--lr-batch", "32",
            "--warmup", "1", "--mixup", "0", "--label-smoothing", "0", "--augmentation", "none",
            "--bn-momentum", "0.9", "--log-every", "100"]
    assert cli.main(argv) == 0
    best = json.load(open(os.path.join(workspace, "model_best", "meta.json")))["metrics"]
    assert best["val.top1"] >= 90.0, best
