"""common.io.saved_model.save: atomic, replaces an export only with overwrite, leaves no temporary folders."""
import os

import pytest
import tensorflow as tf

from common.io import saved_model


class Doubler(tf.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = tf.Variable(factor)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def serve(self, x):
        return {"y": x * self.factor}


def _served(folder):
    loaded = tf.saved_model.load(folder)  # kept alive while its function runs
    return float(loaded.serve(tf.constant([1.0]))["y"][0])


def _save(folder, factor, overwrite=False, extra=None):
    module = Doubler(factor)
    return saved_model.save(module, folder, {"serving_default": module.serve.get_concrete_function()},
                            overwrite=overwrite, extra=extra)


def test_replaces_only_with_overwrite_and_writes_extra_files(tmp_path):
    folder = str(tmp_path / "model")
    os.makedirs(folder)  # an empty folder is no export
    assert _save(folder, 2.0, extra=lambda d: open(os.path.join(d, "labels.json"), "w").write("[]")) == folder
    with pytest.raises(FileExistsError, match="--overwrite"):
        _save(folder, 3.0)
    assert _served(folder) == 2.0
    _save(folder, 3.0, overwrite=True)
    assert _served(folder) == 3.0
    assert sorted(os.listdir(tmp_path)) == ["model"] and not os.path.exists(os.path.join(folder, "labels.json"))


def test_a_failed_export_keeps_the_previous_one(tmp_path):
    folder = str(tmp_path / "model")
    _save(folder, 2.0)

    def fail(_):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _save(folder, 5.0, overwrite=True, extra=fail)
    assert _served(folder) == 2.0
    assert sorted(os.listdir(tmp_path)) == ["model"]
