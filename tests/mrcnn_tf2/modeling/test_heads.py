"""RPN / box / mask heads: shapes, shared weights, initialisation, float32 outputs, get_config."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from mrcnn_tf2.modeling.heads import BoxHead, MaskHead, RpnHead


def pyramid(batch=2, channels=8, size=16):
    return {level: tf.random.normal([batch, size >> (level - 2), size >> (level - 2), channels])
            for level in range(2, 7)}


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def assert_round_trip(layer, inputs):
    """from_config(get_config()) rebuilds the layer; with copied weights it gives equal outputs."""
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    expected = layer(inputs)
    clone(inputs)
    clone.set_weights(layer.get_weights())
    tf.nest.map_structure(lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()), clone(inputs), expected)
    assert type(keras.layers.deserialize(keras.layers.serialize(layer))) is type(layer)


def test_rpn_head_shapes_and_shared_weights():
    head = RpnHead(num_anchors=3, channels=8)
    features = pyramid()
    scores, deltas = head(features)
    assert sorted(scores) == sorted(deltas) == [2, 3, 4, 5, 6]
    for level, x in features.items():
        assert tuple(scores[level].shape) == (*x.shape[:3], 3)
        assert tuple(deltas[level].shape) == (*x.shape[:3], 12)
    assert len(head.trainable_variables) == 6  # one conv + two 1x1, whatever the number of levels
    assert_round_trip(head, features)


def test_box_head_shapes_and_init():
    head = BoxHead(num_classes=5, fc_dims=32)
    rois = tf.random.normal([2, 6, 7, 7, 8])
    class_logits, box_deltas = head(rois)
    assert tuple(class_logits.shape) == (2, 6, 5) and tuple(box_deltas.shape) == (2, 6, 20)
    assert [layer.name for layer in (*head.fcs, head.class_dense, head.box_dense)] == [
        "box_fc1", "box_fc2", "class_logits", "box_deltas"]
    big = BoxHead(num_classes=91)
    big(tf.zeros([1, 1, 7, 7, 256]))
    assert abs(np.std(big.class_dense.kernel.numpy()) - 0.01) < 0.001
    assert abs(np.std(big.box_dense.kernel.numpy()) - 0.001) < 0.0001
    assert not np.any(big.box_dense.bias.numpy())
    assert_round_trip(head, rois)


def test_mask_head_shapes():
    head = MaskHead(num_classes=4, num_convs=2, channels=8)
    rois = tf.random.normal([2, 3, 14, 14, 8])
    logits = head(rois)
    assert tuple(logits.shape) == (2, 3, 28, 28, 4)
    assert len(head.trainable_variables) == 2 * (2 + 1 + 1)
    assert_round_trip(head, rois)


def test_mask_logits_start_near_zero_whatever_the_number_of_classes():
    """Regression: MSRA fan_out on the 1x1 logits gave std sqrt(2 / K), |logits| ~16 at K=4.

    The initial mask loss must be about ln 2 (an uninformed sigmoid), not ~12.
    """
    features = tf.nn.relu(tf.random.stateless_normal([1, 4, 14, 14, 256], seed=[1, 2]))
    for num_classes in (4, 91):
        head = MaskHead(num_classes=num_classes)
        logits = head(features)
        assert abs(np.std(head.logits.kernel.numpy()) - 0.001) < 0.0002
        assert float(tf.reduce_max(tf.abs(logits))) < 0.5, num_classes
        targets = tf.cast(tf.random.stateless_uniform(logits.shape, seed=[3, 4]) < 0.5, tf.float32)
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits))
        assert abs(float(loss) - np.log(2.0)) < 0.05, (num_classes, float(loss))


def test_outputs_are_float32_under_mixed_precision(mixed_precision):
    scores, deltas = RpnHead(channels=8)(pyramid())
    class_logits, box_deltas = BoxHead(num_classes=3, fc_dims=16)(tf.random.normal([1, 2, 7, 7, 8]))
    masks = MaskHead(num_classes=3, num_convs=1, channels=8)(tf.random.normal([1, 2, 14, 14, 8]))
    outputs = [*scores.values(), *deltas.values(), class_logits, box_deltas, masks]
    assert {t.dtype for t in outputs} == {tf.float32}


def test_argument_validation():
    with pytest.raises(ValueError, match="num_classes"):
        BoxHead(num_classes=0)
    with pytest.raises(ValueError, match="num_convs"):
        MaskHead(num_classes=3, num_convs=0)
    with pytest.raises(ValueError, match="num_anchors"):
        RpnHead(num_anchors=-1)
