"""A two-layer classifier of 2-D points as a third model family (tests only).

Everything it writes is what :class:`common.command.family.Family` asks for, nothing about flags,
modes, checkpoints, logging or ``config.json``. ``write_points`` makes the data: two
Gaussian blobs in ``points.npz`` (``separation`` sets how easy they are). Run as a script
(``PYTHONPATH=. python tests/common/points_family.py train ...``) it registers the family and calls ``main.py``:
the kill-and-resume tests train it in a subprocess.
"""
import dataclasses
import os
import sys

import numpy as np
import tensorflow as tf
import tf_keras as keras

from common.command.config import DataConfig, Experiment, TaskConfig
from common.command.family import Family
from common.training.task import Task


@dataclasses.dataclass(frozen=True)
class PointsData(DataConfig):
    image_size: int = 2  # the shared --image-size flag lands here; the points are 2-D


@dataclasses.dataclass(frozen=True)
class PointsModel:
    hidden: int = 16


@dataclasses.dataclass(frozen=True)
class PointsTask(TaskConfig):
    """Adam at a constant ``lr`` for 16 points (the shared learning-rate flags apply)."""

    model: PointsModel = PointsModel()
    optimizer: str = "adam"
    lr: float = 0.05
    lr_batch: int = 16
    lr_schedule: str = "piecewise"


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
    experiment_class = PointsExperiment

    def build_task(self, experiment, training):
        experiment = experiment.override({"data.num_classes": experiment.data.num_classes or 2})
        return PointsClassification(experiment), experiment

    def build_model(self, experiment, task):
        return task.build_model()

    def build_optimizer(self, experiment, global_batch, steps_per_epoch):
        from common.training.schedules import learning_rate_schedule

        schedule = learning_rate_schedule(experiment.task, global_batch, steps_per_epoch, experiment.trainer.epochs)
        return keras.optimizers.Adam(schedule)

    def load_model(self, experiment, checkpoint, use_ema=False):
        from common.training.checkpoint import restore_model_only

        model = PointsClassification(experiment).build_model()
        restore_model_only(checkpoint, model)
        return model

    def predict(self, experiment, model, paths, out_dir, options):
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


def write_points(folder, n=256, seed=0, separation=1.5, noise=0.5):
    """Two Gaussian blobs at +-``separation`` with std ``noise``, train and val."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", n), ("val", n // 4)):
        y = rng.integers(0, 2, count)
        x = rng.normal(0, noise, (count, 2)) + np.where(y[:, None] == 1, separation, -separation)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.astype(np.float32), y.astype(np.int32)
    os.makedirs(folder, exist_ok=True)
    np.savez(os.path.join(folder, "points.npz"), **arrays)
    return folder


def points_mlp():
    """The one model of the points task."""
    base = PointsExperiment()
    return dataclasses.replace(base, model="points-mlp", workspace="./points",
                               trainer=dataclasses.replace(base.trainer, epochs=3, batch_size=16))


def register_points():
    """Registers the family (the task's hooks) and its model; returns the family."""
    from common.command import registry

    family = registry.register(PointsFamily())
    registry.register_experiment("points-mlp", family.name)(points_mlp)
    return family


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_training(argv, faults=None, timeout=300):
    """``main.py train ARGV`` of the points family in a subprocess (``faults``: fault-injector env variables);
    returns the ``CompletedProcess``."""
    import subprocess

    from fault_injector import KILL_ENV, SIGNAL_ENV

    env = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, SIGNAL_ENV)}
    env.update(PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", **(faults or {}))
    return subprocess.run([sys.executable, os.path.abspath(__file__), "train", "--model", "points-mlp", *argv],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def checkpoint_tensors(folder, prefixes=("model/",)):
    """``{name: array}`` of a checkpoint folder's variables whose names start with ``prefixes``."""
    from common.training.checkpoint import resolve

    reader = tf.train.load_checkpoint(resolve(folder))
    return {n: reader.get_tensor(n) for n in sorted(reader.get_variable_to_shape_map()) if n.startswith(prefixes)}


def checkpoint_meta(folder):
    """The ``meta.json`` of a checkpoint folder."""
    import json

    with open(os.path.join(folder, "meta.json")) as f:
        return json.load(f)


if __name__ == "__main__":
    import main as entry  # with the repository root on PYTHONPATH
    from fault_injector import KILL_ENV, SIGNAL_ENV, install, install_signal

    if os.environ.get(KILL_ENV):
        install(os.environ[KILL_ENV])
    if os.environ.get(SIGNAL_ENV):
        install_signal(os.environ[SIGNAL_ENV])
    register_points()
    sys.exit(entry.main(sys.argv[1:]))
