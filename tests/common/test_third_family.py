"""A third model family needs no command-line code: register it, and ``main.py`` trains,
evaluates and exports it with the shared flags.

The family is a two-layer classifier of 2-D points (two Gaussian blobs written to
``points.npz`` by the test): everything it writes is what :class:`common.family.Family`
asks for, nothing about flags, modes, checkpoints, logging or ``config.json``.
"""
import dataclasses
import json
import os
from typing import Optional

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import main as entry
from common import registry
from common.config import Experiment
from common.family import Family
from common.task import Task


# ------------------------------------------------------------------ the family
@dataclasses.dataclass(frozen=True)
class PointsData:
    data_dir: Optional[str] = None
    backend: str = "tfdata"
    image_size: int = 2  # the shared --image-size flag lands here; the points are 2-D
    num_classes: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class PointsModel:
    hidden: int = 16


@dataclasses.dataclass(frozen=True)
class PointsTask:
    model: PointsModel = PointsModel()
    optimizer: str = "adam"
    momentum: float = 0.9
    lr: float = 0.05


@dataclasses.dataclass(frozen=True)
class PointsExperiment(Experiment):
    data: PointsData = PointsData()
    task: PointsTask = PointsTask()


class PointsClassification(Task):
    name = "points"

    def __init__(self, experiment):
        with np.load(os.path.join(experiment.data.data_dir, "points.npz")) as f:
            self.arrays = {k: f[k] for k in f.files}
        self.hidden, self.classes = experiment.task.model.hidden, experiment.data.num_classes

    def build_model(self):
        return keras.Sequential([keras.layers.Dense(self.hidden, activation="relu", input_shape=(2,)),
                                 keras.layers.Dense(self.classes)])

    def _data(self, split, batch, shuffle_seed=None):
        ds = tf.data.Dataset.from_tensor_slices((self.arrays[f"x_{split}"], self.arrays[f"y_{split}"]))
        return (ds.shuffle(256, seed=shuffle_seed) if shuffle_seed is not None else ds).batch(batch)

    def build_train_dataset(self, global_batch, epoch, input_context=None):
        return self._data("train", global_batch, shuffle_seed=epoch)

    def build_eval_dataset(self, global_batch, input_context=None):
        return self._data("val", global_batch)

    def steps_per_epoch(self, global_batch):
        return len(self.arrays["y_train"]) // global_batch

    def train_loss(self, model, batch, training=True):
        x, y = batch
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x, training=training))), {}

    def validation_step(self, model, batch):
        """Correct predictions and examples of a batch (the trainer sums them)."""
        points, labels = batch
        predicted = tf.argmax(model(points, training=False), axis=-1, output_type=tf.int32)
        return {"top1": tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32)),
                "count": tf.cast(tf.size(labels), tf.float32)}

    def reduce_validation(self, sums):
        return {"top1": 100.0 * sums["top1"] / sums["count"]}


class PointsFamily(Family):
    name = "points"
    models = ("points-mlp",)
    experiment_class = PointsExperiment

    def default_experiment(self, model):
        base = PointsExperiment()
        return dataclasses.replace(base, model=model, workspace="./points",
                                   trainer=dataclasses.replace(base.trainer, epochs=3, batch_size=16))

    def build_task(self, experiment, training):
        experiment = experiment.override({"data.num_classes": experiment.data.num_classes or 2})
        return PointsClassification(experiment), experiment

    def build_model(self, experiment, task):
        return task.build_model()

    def build_optimizer(self, experiment, global_batch, steps_per_epoch):
        return keras.optimizers.Adam(experiment.task.lr)

    def load_model(self, experiment, checkpoint, use_ema=False):
        from common.checkpoint import restore_model_only

        model = PointsClassification(experiment).build_model()
        restore_model_only(checkpoint, model)
        return model

    def predict(self, experiment, model, paths, options):
        raise NotImplementedError

    def export(self, experiment, model, export_dir, options):
        out = export_dir or os.path.join(experiment.workspace, "saved_model")
        serve = tf.function(lambda x: {"probabilities": tf.nn.softmax(model(x))},
                            input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        tf.saved_model.save(model, out, signatures={"serving_default": serve})
        return out

    def info(self, experiment):
        return {"model": experiment.model, "hidden": experiment.task.model.hidden}

    def benchmark_step(self, experiment, kind, batch):
        raise NotImplementedError


def write_points(folder, n=256, seed=0):
    """Two separable Gaussian blobs, train and val."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", n), ("val", n // 4)):
        y = rng.integers(0, 2, count)
        x = rng.normal(0, 0.5, (count, 2)) + np.where(y[:, None] == 1, 1.5, -1.5)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.astype(np.float32), y.astype(np.int32)
    os.makedirs(folder, exist_ok=True)
    np.savez(os.path.join(folder, "points.npz"), **arrays)
    return folder


@pytest.fixture
def points_family():
    family = registry.register(PointsFamily())
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
