"""Initial weights with another class count (efficientnet_tf2.transfer): every layer but the head loads, the head
starts fresh, for NGC files, Keras files, keras.applications files and training checkpoints; keras.applications
import is exact (parity with tf_keras.applications.EfficientNetB0..B7 on random weights, computed here)."""
import logging
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from efficientnet_tf2 import transfer
from efficientnet_tf2.experiments import classifier_config
from efficientnet_tf2.model import build_classifier

NGC_B0 = pathlib.Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "ngc_efficientnet" / \
    "efficientnet-b0_random_init.npz"


def _model(name="efficientnet-b0", classes=1000, size=32, padding="same", seed=0):
    keras.utils.set_random_seed(seed)
    config = classifier_config(name, padding=padding).replace(num_classes=classes)
    return build_classifier(config, input_shape=(size, size, 3), name=f"m{classes}_{seed}")


def _builder(name="efficientnet-b0", size=32, padding="same"):
    return lambda classes: _model(name, classes, size, padding, seed=99)


def _assert_all_but_head_equal(a, b):
    compared = 0
    for layer in a.layers:
        if layer.weights and layer.name != transfer.HEAD:
            for x, y in zip(layer.get_weights(), b.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(x, y, err_msg=layer.name)
            compared += 1
    assert compared > 100


@pytest.mark.parametrize("kind", ["keras .h5", "training checkpoint"])
def test_own_files_with_another_class_count_load_all_but_the_head(tmp_path, kind, caplog):
    source, target = _model(classes=5, seed=1), _model(classes=3, seed=2)
    head_before = target.get_layer("predictions").get_weights()
    if kind == "keras .h5":
        path = str(tmp_path / "five.h5")
        source.save_weights(path)
    else:
        path = tf.train.Checkpoint(model=source).write(str(tmp_path / "ckpt" / "model"))
    assert transfer.file_num_classes(path) == 5
    with caplog.at_level(logging.INFO, logger="efficientnet_tf2.transfer"):
        assert transfer.load_initial_weights(target, path, _builder()) == ["predictions"]
    _assert_all_but_head_equal(source, target)
    for before, after in zip(head_before, target.get_layer("predictions").get_weights()):
        np.testing.assert_array_equal(before, after)  # the head keeps its fresh initialisation
    assert any("starting fresh: predictions (5 classes there, 3 here)" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not NGC_B0.exists(), reason="needs ../shared/fixtures (the NGC-layout B0 fixture)")
def test_an_ngc_state_dict_with_another_class_count():
    from efficientnet_tf2 import ngc

    imagenet = _model(classes=1000, padding="symmetric", seed=3)
    ngc.load_ngc_checkpoint(imagenet, str(NGC_B0))
    target = _model(classes=10, padding="symmetric", seed=4)
    assert transfer.file_num_classes(str(NGC_B0)) == 1000
    assert transfer.load_initial_weights(target, str(NGC_B0), _builder(padding="symmetric")) == ["predictions"]
    _assert_all_but_head_equal(imagenet, target)


def test_a_file_of_another_model_is_named_not_loaded(tmp_path):
    path = str(tmp_path / "b1.h5")
    _model("efficientnet-b1", classes=5).save_weights(path)
    target = _model(classes=3, seed=5)
    before = target.get_layer("stem_conv").kernel.numpy()
    with pytest.raises(ValueError, match=r"cannot load weights from .*b1.h5"):
        transfer.load_initial_weights(target, path, _builder())
    np.testing.assert_array_equal(before, target.get_layer("stem_conv").kernel.numpy())


@pytest.mark.parametrize("index", range(8))
def test_keras_applications_import_is_exact(tmp_path, index):
    """Random-weight ``EfficientNetB{index}`` (BN statistics randomised too) saved as ``.h5``; imported, our model
    equals Keras's network from its stem on the same normalised pixels (Keras normalises inside the model)."""
    keras.utils.set_random_seed(index)
    size = 32
    reference = getattr(keras.applications, f"EfficientNetB{index}")(weights=None, input_shape=(size, size, 3),
                                                                     classifier_activation=None)
    for layer in reference.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            rng = np.random.default_rng(len(layer.name))
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))
    path = str(tmp_path / f"efficientnetb{index}.h5")
    reference.save_weights(path)
    ours = _model(f"efficientnet-b{index}", size=size, seed=100 + index)
    assert transfer.is_keras_applications_file(path)
    transfer.load_file(ours, path)
    network = keras.Model(reference.get_layer("stem_conv_pad").input, reference.output)
    pixels = np.random.default_rng(index).normal(0, 1, (2, size, size, 3)).astype(np.float32)
    count = lambda model: int(sum(np.prod(v.shape) for v in model.trainable_weights))  # noqa: E731
    assert count(ours) == count(reference)  # the scaling table (B0: 5,288,548 ... B7: 66,347,960)
    theirs, mine = network(pixels, training=False).numpy(), ours(pixels, training=False).numpy()
    assert np.abs(mine - theirs).max() <= 1e-4 * max(1.0, np.abs(theirs).max()), np.abs(mine - theirs).max()
