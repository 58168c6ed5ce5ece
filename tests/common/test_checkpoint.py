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


# ------------------------------------------------------------------ damaged files, full disk
def _two_saves(tmp_path):
    """A workspace whose checkpoint-latest holds step 7 and model_best step 5."""
    model, step = _model(0), tf.Variable(5, dtype=tf.int64)
    manager = ckpt.CheckpointManager(str(tmp_path), {"model": model, "step": step})
    manager.save_best({"epoch": 1})
    step.assign(7)
    manager.save_latest({"epoch": 2})
    return manager


def _flip_a_byte(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


DAMAGE = {
    "flipped byte in the data": lambda f: _flip_a_byte(next(os.path.join(f, n) for n in os.listdir(f) if ".data-" in n)),
    "truncated data file": lambda f: [open(os.path.join(f, n), "r+b").truncate(3) for n in os.listdir(f) if ".data-" in n],
    "garbage index": lambda f: open(os.path.join(f, "ckpt.index"), "wb").write(b"garbage" * 9),
    "garbage meta.json": lambda f: open(os.path.join(f, "meta.json"), "w").write("{not json"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_resume_names_a_damaged_latest_and_falls_back_to_the_intact_copy(tmp_path, kind, caplog):
    _two_saves(tmp_path)
    DAMAGE[kind](str(tmp_path / "checkpoint-latest"))
    step = tf.Variable(0, dtype=tf.int64)
    manager = ckpt.CheckpointManager(str(tmp_path), {"model": _model(1), "step": step})
    with caplog.at_level("WARNING"):
        meta = manager.restore(str(tmp_path))
    assert meta == {"epoch": 1} and int(step) == 5  # model_best's state, whole
    assert f"checkpoint {tmp_path / 'checkpoint-latest'} cannot be restored" in caplog.text
    assert f"resumed from the intact copy {tmp_path / 'model_best'}" in caplog.text


def test_no_intact_copy_is_one_user_error_naming_each(tmp_path):
    from common.command.errors import CheckpointError, user_message

    _two_saves(tmp_path)
    for name in ("checkpoint-latest", "model_best"):
        DAMAGE["garbage index"](str(tmp_path / name))
    with pytest.raises(CheckpointError) as raised:
        ckpt.CheckpointManager(str(tmp_path), {"model": _model(1), "step": tf.Variable(0, dtype=tf.int64)}).restore(
            str(tmp_path))
    line = user_message(raised.value)
    assert line.startswith("error: --resume ") and "checkpoint-latest: " in line and "model_best: " in line
    assert "\n" not in line
    with pytest.raises(CheckpointError, match="cannot be read .*pass another copy with --checkpoint"):
        ckpt.restore_model_only(str(tmp_path / "model_best"), _model(2))


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_previous_checkpoints(tmp_path):
    from common.command.errors import CheckpointError

    manager = _two_saves(tmp_path)

    def full(prefix):
        raise tf.errors.ResourceExhaustedError(None, None, f"{prefix}.data-00000-of-00001; No space left on device")

    manager.checkpoint.write = full
    with pytest.raises(CheckpointError, match="cannot save checkpoint-latest in .*No space left on device.*intact"):
        manager.save_latest({"epoch": 3})
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-latest", "model_best"]  # no half-written folder left
    step = tf.Variable(0, dtype=tf.int64)
    assert ckpt.CheckpointManager(str(tmp_path), {"model": _model(1), "step": step}).restore(str(tmp_path)) == {
        "epoch": 2} and int(step) == 7


def test_resume_with_another_optimizer_says_what_differs(tmp_path):
    import dataclasses

    from common.command import registry
    from common.command.commands import check_resume
    from common.command.config import save_config
    from common.command.errors import CheckpointError

    saved = registry.get_experiment("efficientnet-b0")
    save_config(saved, str(tmp_path))
    check_resume(str(tmp_path), saved)  # the same setup: fine
    other = dataclasses.replace(saved, task=dataclasses.replace(saved.task, optimizer="adam"),
                                trainer=dataclasses.replace(saved.trainer, use_ema=True))
    with pytest.raises(CheckpointError, match=r"--optimizer rmsprop then, adam now; --use-ema False then, True now"):
        check_resume(str(tmp_path / "checkpoint-latest"), other)
