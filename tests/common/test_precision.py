"""Precision policies, loss scaling and the AMP training step."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.training import precision
from common.training.optimizers import build_optimizer


@pytest.fixture
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_resolve_precision_aliases():
    assert precision.resolve_precision(amp=True) == "mixed_float16"
    assert precision.resolve_precision(bf16=True) == "mixed_bfloat16"
    assert precision.resolve_precision() == "float32"
    assert precision.resolve_precision(precision="AMP") == "mixed_float16"
    assert precision.resolve_precision(precision="TF32") == "float32"
    with pytest.raises(ValueError, match="exclusive"):
        precision.resolve_precision(amp=True, bf16=True)
    with pytest.raises(ValueError, match="Unknown precision"):
        precision.resolve_precision(precision="int4")


def test_loss_scale_dynamic_and_static(restore_policy):
    opt = precision.wrap_optimizer(build_optimizer("sgd", 0.1), "mixed_float16")
    assert precision.is_loss_scaled(opt) and opt.dynamic
    static = precision.wrap_optimizer(build_optimizer("sgd", 0.1), "mixed_float16", static_loss_scale=256)
    assert not static.dynamic and float(static.loss_scale) == 256.0
    assert float(precision.scale_loss(static, tf.constant(2.0))) == 512.0
    plain = precision.wrap_optimizer(build_optimizer("sgd", 0.1), "mixed_bfloat16")
    assert not precision.is_loss_scaled(plain)


def test_amp_train_step_finite_loss_float32_variables(restore_policy):
    from efficientnet_tf2.experiments import classifier_config
    from efficientnet_tf2.model import build_classifier

    policy = precision.configure_precision("mixed_float16")
    assert policy.compute_dtype == "float16" and policy.variable_dtype == "float32"
    model = build_classifier(classifier_config("efficientnet-b0", num_classes=4), input_shape=(32, 32, 3))
    opt = precision.wrap_optimizer(build_optimizer("rmsprop", 1e-3), "mixed_float16")
    images, labels = tf.random.normal([4, 32, 32, 3]), tf.constant([0, 1, 2, 3])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            scaled = precision.scale_loss(opt, loss)
        grads = precision.unscale_gradients(opt, tape.gradient(scaled, model.trainable_variables))
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, logits

    before = [v.numpy() for v in model.trainable_variables]
    # Dynamic loss scaling starts at 2**15 and halves (skipping the update) on
    # overflow, so the first steps may leave the weights unchanged.
    for _ in range(20):
        loss, logits = step()
        assert logits.dtype == tf.float32 and loss.dtype == tf.float32
        assert np.isfinite(float(loss))
        changed = sum(not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))
        if changed:
            break
    assert all(v.dtype == tf.float32 for v in model.variables)
    assert model.get_layer("block2a_expand_conv").compute_dtype == "float16"
    assert changed > len(before) // 2
    assert float(opt.loss_scale) <= 2.0 ** 15
