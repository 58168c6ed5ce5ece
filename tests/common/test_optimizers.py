"""Weight decay masks BN/bias; L2 value; optimizer factory."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.training.optimizers import build_optimizer, decayed_variables, l2_loss


def small_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=True, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, name="fc")(x)
    return keras.Model(inputs, outputs)


def test_weight_decay_skips_batchnorm_and_bias():
    model = small_model()
    names = sorted(v.name for v in decayed_variables(model.trainable_variables))
    assert names == ["conv/kernel:0", "dw/depthwise_kernel:0", "fc/kernel:0"]


def test_l2_loss_value():
    model = small_model()
    expected = 0.5 * 1e-4 * sum(float(np.sum(v.numpy() ** 2)) for v in decayed_variables(model.trainable_variables))
    assert float(l2_loss(model.trainable_variables, 1e-4)) == pytest.approx(expected, rel=1e-5)
    assert float(l2_loss(model.trainable_variables, 0.0)) == 0.0


def test_l2_gradient_is_pytorch_weight_decay():
    var = tf.Variable([[1.0, -2.0]], name="kernel")
    with tf.GradientTape() as tape:
        loss = l2_loss([var], 0.1)
    np.testing.assert_allclose(tape.gradient(loss, var), 0.1 * var.numpy())


@pytest.mark.parametrize("name,cls", [("rmsprop", keras.optimizers.RMSprop), ("sgd", keras.optimizers.SGD)])
def test_build_optimizer(name, cls):
    opt = build_optimizer(name, 0.1, momentum=0.9, rho=0.9, epsilon=1e-3)
    assert isinstance(opt, cls)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        build_optimizer("lamb", 0.1)
