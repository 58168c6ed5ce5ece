"""Atomic latest/best checkpoints, resolution of paths, RNG state round trip."""
import os
import random

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.training import checkpoint as ckpt


def _model(seed):
    tf.random.set_seed(seed)
    return keras.Sequential([keras.layers.Dense(3, input_shape=(4,)), keras.layers.BatchNormalization()])


def test_save_and_restore_latest_and_best(tmp_path):
    model, step = _model(0), tf.Variable(7, dtype=tf.int64)
    manager = ckpt.CheckpointManager(str(tmp_path), {"model": model, "step": step})
    manager.save_latest({"epoch": 1})
    step.assign(9)
    manager.save_best({"epoch": 2})
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-latest", "model_best"]  # no temp folders left

    other, other_step = _model(1), tf.Variable(0, dtype=tf.int64)
    meta = ckpt.CheckpointManager(str(tmp_path), {"model": other, "step": other_step}).restore(str(tmp_path))
    assert meta == {"epoch": 1} and int(other_step) == 7  # a workspace resolves to checkpoint-latest
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    ckpt.CheckpointManager(str(tmp_path), {"model": other, "step": other_step}).restore(str(tmp_path / "model_best"))
    assert int(other_step) == 9


def test_interrupted_swap_keeps_the_previous_checkpoint(tmp_path):
    model = _model(0)
    manager = ckpt.CheckpointManager(str(tmp_path), {"model": model})
    manager.save_latest({"epoch": 1})
    # Simulate a crash between "move old aside" and "move new into place".
    os.replace(tmp_path / "checkpoint-latest", tmp_path / "checkpoint-latest.old")
    assert ckpt.resolve(str(tmp_path)).endswith(os.path.join("checkpoint-latest.old", "ckpt"))
    manager.save_latest({"epoch": 2})
    assert ckpt.read_meta(str(tmp_path)) == {"epoch": 2}
    assert not (tmp_path / "checkpoint-latest.old").exists()


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        ckpt.resolve(str(tmp_path / "nothing"))


def test_restore_model_only_and_load_weights_file(tmp_path):
    model = _model(0)
    ckpt.CheckpointManager(str(tmp_path / "ws"), {"model": model, "optimizer": keras.optimizers.SGD()}).save_latest({})
    other = _model(1)
    ckpt.load_weights_file(other, str(tmp_path / "ws"))
    np.testing.assert_array_equal(model.weights[0].numpy(), other.weights[0].numpy())
    model.save_weights(str(tmp_path / "w.h5"))
    third = _model(2)
    ckpt.load_weights_file(third, str(tmp_path / "w.h5"))
    np.testing.assert_array_equal(model.weights[0].numpy(), third.weights[0].numpy())
    with pytest.raises(FileNotFoundError, match="no such file"):
        ckpt.load_weights_file(third, str(tmp_path / "missing.h5"))
    wrong = keras.Sequential([keras.layers.Dense(5, input_shape=(4,))])
    with pytest.raises(ValueError, match="w.h5"):
        ckpt.load_weights_file(wrong, str(tmp_path / "w.h5"))


def test_rng_state_round_trip():
    state = ckpt.save_rng_state()
    expected = (random.random(), np.random.rand(), tf.random.get_global_generator().normal([2]).numpy())
    ckpt.restore_rng_state(state)
    again = (random.random(), np.random.rand(), tf.random.get_global_generator().normal([2]).numpy())
    assert expected[:2] == again[:2]
    np.testing.assert_array_equal(expected[2], again[2])
