"""ResNet backbone: Keras-applications parity (params, names, weights), freezing, errors."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from backbones.resnet import FrozenBatchNormalization, build_resnet, load_backbone_weights

KERAS_RESNET50_PARAMS = 23_587_712


@pytest.fixture(scope="module")
def keras_weights(tmp_path_factory):
    """(keras.applications.ResNet50 without top, its weights saved as .h5), random BN stats."""
    app = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    rng = np.random.default_rng(0)
    for layer in app.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    path = str(tmp_path_factory.mktemp("weights") / "resnet50_notop.h5")
    app.save_weights(path)
    return app, path


@pytest.fixture(scope="module")
def resnet50():
    return build_resnet(input_shape=(64, 64, 3))


def test_parameter_count_and_names_match_keras(resnet50, keras_weights):
    app, _ = keras_weights
    assert resnet50.count_params() == KERAS_RESNET50_PARAMS == app.count_params()
    ours = {layer.name for layer in resnet50.layers if layer.weights}
    assert ours == {layer.name for layer in app.layers if layer.weights}


def test_outputs_are_the_pyramid(resnet50):
    outputs = resnet50(tf.zeros([1, 64, 64, 3]))
    assert sorted(outputs) == [2, 3, 4, 5]
    assert {l: tuple(t.shape) for l, t in outputs.items()} == {
        2: (1, 16, 16, 256), 3: (1, 8, 8, 512), 4: (1, 4, 4, 1024), 5: (1, 2, 2, 2048)}


def test_keras_weights_load_by_name_and_give_identical_outputs(resnet50, keras_weights):
    app, path = keras_weights
    load_backbone_weights(resnet50, path)
    images = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype("float32")
    expected = app(images).numpy()
    np.testing.assert_array_equal(resnet50(images, training=True)[5].numpy(), expected)  # frozen BN
    c4 = keras.Model(app.input, app.get_layer("conv4_block6_out").output)(images).numpy()
    np.testing.assert_array_equal(resnet50(images)[4].numpy(), c4)


def test_frozen_stages_and_batch_norm(resnet50):
    trainable = {v.name.split("/")[0] for v in resnet50.trainable_variables}
    assert not any(name.startswith(("conv1_", "conv2_")) or name.endswith("_bn") for name in trainable)
    assert "conv3_block1_1_conv" in trainable
    assert len(resnet50.trainable_variables) == 2 * (53 - 1 - 10)  # kernel + bias of convs in res3..res5
    assert isinstance(resnet50.get_layer("conv5_block1_1_bn"), FrozenBatchNormalization)
    assert not resnet50.get_layer("conv2_block3_3_conv").trainable


def test_blanket_unfreeze_leaves_batch_norm_frozen():
    model = build_resnet(width_multiplier=0.125, input_shape=(64, 64, 3))
    model.trainable = True
    assert not any(v.name.split("/")[0].endswith("_bn") for v in model.trainable_variables)
    assert not model.get_layer("conv1_bn").trainable


def test_finetune_bn_and_freeze_at():
    model = build_resnet(width_multiplier=0.125, finetune_bn=True, freeze_at=3, input_shape=(64, 64, 3))
    trainable = {v.name.split("/")[0] for v in model.trainable_variables}
    assert {"conv4_block1_1_bn", "conv5_block3_3_bn", "conv4_block1_1_conv"} <= trainable
    assert not trainable & {"conv1_conv", "conv1_bn", "conv3_block4_3_conv", "conv3_block4_3_bn"}
    assert type(model.get_layer("conv4_block1_1_bn")) is keras.layers.BatchNormalization


def test_frozen_batch_norm_ignores_training_and_round_trips():
    layer = FrozenBatchNormalization(epsilon=1e-3, name="bn")
    x = tf.random.normal([4, 3, 3, 2]) * 5.0 + 3.0
    np.testing.assert_allclose(layer(x, training=True).numpy(), x.numpy() / np.sqrt(1 + 1e-3), rtol=1e-5)
    clone = FrozenBatchNormalization.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and not clone.trainable
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, FrozenBatchNormalization)


@pytest.fixture(scope="module")
def narrow():
    """A 1/8-width ResNet-50 striding on the 3x3 convs (v1.5)."""
    return build_resnet(width_multiplier=0.125, stride_in_1x1=False, input_shape=(64, 64, 3))


def test_width_multiplier_and_stride_placement(narrow):
    outputs = narrow(tf.zeros([1, 64, 64, 3]))
    assert [t.shape[-1] for _, t in sorted(outputs.items())] == [32, 64, 128, 256]
    assert [t.shape[1] for _, t in sorted(outputs.items())] == [16, 8, 4, 2]
    assert narrow.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert narrow.get_layer("conv3_block1_1_conv").strides == (1, 1)


def test_load_errors_name_the_file_and_layers(tmp_path, keras_weights, narrow):
    _, path = keras_weights
    with pytest.raises(ValueError, match=r"resnet50_notop\.h5.*conv1_conv"):
        load_backbone_weights(narrow, path)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        load_backbone_weights(narrow, str(tmp_path / "missing.h5"))
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        load_backbone_weights(narrow, str(tmp_path / "nothing_here"))


def test_tf_checkpoint_round_trip(tmp_path, narrow):
    narrow.save_weights(str(tmp_path / "ckpt"))
    target = build_resnet(width_multiplier=0.125, stride_in_1x1=False, input_shape=(64, 64, 3))
    load_backbone_weights(target, str(tmp_path))  # a directory: its latest checkpoint
    images = tf.random.normal([1, 64, 64, 3])
    np.testing.assert_array_equal(target(images)[5].numpy(), narrow(images)[5].numpy())
