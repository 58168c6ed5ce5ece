"""A third model family needs no command-line code: register it, and ``main.py`` trains,
evaluates and exports it with the shared flags.

The family is a two-layer classifier of 2-D points (two Gaussian blobs written to
``points.npz`` by the test): everything it writes is what :class:`common.command.family.Family`
asks for, nothing about flags, modes, checkpoints, logging or ``config.json``.
"""
import json
import os

import pytest
import tensorflow as tf

import main as entry
from common.command import registry
from points_family import register_points, write_points


@pytest.fixture
def points_family():
    family = register_points()
    yield family
    registry.unregister(family)


def test_a_registered_family_trains_evaluates_and_exports_through_main(points_family, tmp_path, capsys):
    data, work = write_points(str(tmp_path / "points")), str(tmp_path / "run")
    assert entry.main(["train", "--model", "points-mlp", data, "--workspace", work, "--epochs", "3",
                       "-b", "16", "--seed", "1", "--config", "hidden=8", "task.lr=0.05"]) == 0
    config = json.load(open(os.path.join(work, "config.json")))
    assert config["task"]["model"]["hidden"] == 8 and config["data"]["num_classes"] == 2
    assert os.path.isdir(os.path.join(work, "model_best"))
    capsys.readouterr()
    # eval reads config.json: no --model, no repeated flags
    assert entry.main(["eval", "--workspace", work, "--data-dir", data]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):])["val.top1"] >= 95.0
    records = [json.loads(line[5:]) for line in open(os.path.join(work, "raport.json")) if line.startswith("DLLL")]
    top1 = [r["data"]["val.top1"] for r in records if "val.top1" in r.get("data", {})]
    assert top1 and top1[-1] >= 95.0, top1  # separable blobs: the classifier learned them
    assert entry.main(["export", "--workspace", work]) == 0
    loaded = tf.saved_model.load(os.path.join(work, "saved_model"))
    probs = loaded.signatures["serving_default"](tf.constant([[1.5, 1.5], [-1.5, -1.5]]))["probabilities"].numpy()
    assert probs.shape == (2, 2) and probs[0, 1] > 0.9 and probs[1, 0] > 0.9


def test_the_family_gets_the_shared_flags_and_help(points_family, capsys):
    with pytest.raises(SystemExit) as exit_info:
        entry.main(["train", "--model", "points-mlp", "-h"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("--workspace", "--batch-size", "--epochs", "--no-eval", "--image-size", "--amp", "--resume"):
        assert name in out
