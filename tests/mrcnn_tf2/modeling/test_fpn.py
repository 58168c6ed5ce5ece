"""FPN: output levels and shapes, golden top-down sum with identity convs, P6, get_config."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from mrcnn_tf2.modeling.fpn import Fpn


def backbone_features(channels=(8, 16, 32, 64), size=32, batch=2, seed=0):
    """``{2..5: [B, size / 2**(l-2), ..., C_l]}`` random features."""
    rng = np.random.default_rng(seed)
    return {level: tf.constant(rng.normal(size=(batch, size >> (level - 2), size >> (level - 2), c)), tf.float32)
            for level, c in zip(range(2, 6), channels)}


def upsample(x):
    return np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)


def test_levels_and_shapes():
    fpn = Fpn(channels=16)
    outputs = fpn(backbone_features())
    assert sorted(outputs) == [2, 3, 4, 5, 6]
    assert {l: tuple(t.shape) for l, t in outputs.items()} == {
        2: (2, 32, 32, 16), 3: (2, 16, 16, 16), 4: (2, 8, 8, 16), 5: (2, 4, 4, 16), 6: (2, 2, 2, 16)}
    np.testing.assert_array_equal(outputs[6].numpy(), outputs[5].numpy()[:, ::2, ::2])  # P6 = subsampled P5
    assert len(fpn.trainable_variables) == 16  # 4 laterals + 4 outputs, kernel + bias


def test_top_down_sum_with_identity_convs():
    channels = 4
    features = backbone_features(channels=(channels,) * 4, size=16)
    fpn = Fpn(channels=channels)
    fpn(features)
    identity_1x1 = np.eye(channels, dtype=np.float32)[None, None]
    identity_3x3 = np.zeros((3, 3, channels, channels), np.float32)
    identity_3x3[1, 1] = np.eye(channels)
    for level in range(2, 6):
        fpn.lateral[f"p{level}"].set_weights([identity_1x1, np.zeros(channels, np.float32)])
        fpn.output_convs[f"p{level}"].set_weights([identity_3x3, np.zeros(channels, np.float32)])
    outputs = fpn(features)
    expected = features[5].numpy()
    np.testing.assert_allclose(outputs[5].numpy(), expected, rtol=1e-6)
    for level in (4, 3, 2):
        expected = features[level].numpy() + upsample(expected)
        np.testing.assert_allclose(outputs[level].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_odd_p5_gives_ceil_sized_p6():
    features = {l: tf.zeros([1, 5 << (5 - l), 5 << (5 - l), 4]) for l in range(2, 6)}
    assert tuple(Fpn(channels=4)(features)[6].shape) == (1, 3, 3, 4)


def test_get_config_round_trip():
    fpn = Fpn(min_level=3, max_level=6, channels=8, name="fpn")
    clone = Fpn.from_config(fpn.get_config())
    assert clone.get_config() == fpn.get_config()
    features = backbone_features()
    outputs = fpn(features)
    assert sorted(outputs) == [3, 4, 5, 6]
    clone(features)
    clone.set_weights(fpn.get_weights())
    for level in outputs:
        np.testing.assert_array_equal(clone(features)[level].numpy(), outputs[level].numpy())
    assert isinstance(keras.layers.deserialize(keras.layers.serialize(fpn)), Fpn)


def test_argument_and_input_errors():
    with pytest.raises(ValueError, match="Received"):
        Fpn(min_level=6, max_level=5)
    with pytest.raises(ValueError, match=r"lacks levels \[2\]"):
        Fpn(channels=4)({l: tf.zeros([1, 2, 2, 4]) for l in (3, 4, 5)})
