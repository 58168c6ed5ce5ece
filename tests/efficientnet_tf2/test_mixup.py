"""Tests for efficientnet_tf2.mixup."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from efficientnet_tf2 import mixup as mx


def batch(size=4, classes=3):
    """(images [B, 2, 2, 3] float32 = example index, one-hot labels [B, K])."""
    images = np.arange(size, dtype=np.float32)[:, None, None, None] * np.ones([1, 2, 2, 3])
    labels = np.eye(classes, dtype=np.float32)[np.arange(size) % classes]
    return tf.constant(images, tf.float32), tf.constant(labels)


def test_mix_with_partner_golden_arithmetic_reversed_partner():
    images, labels = batch()
    mixed_images, mixed_labels = mx.mix_with_partner(images, labels, 0.7)
    # Example i is mixed with example 3 - i.
    np.testing.assert_allclose(mixed_images[:, 0, 0, 0], [0.9, 1.3, 1.7, 2.1], rtol=1e-6)
    np.testing.assert_allclose(mixed_labels[0], [1.0, 0.0, 0.0])  # 0 and 3 share class 0.
    np.testing.assert_allclose(mixed_labels[1], [0.0, 0.7, 0.3], rtol=1e-6)


def test_mix_with_explicit_partner():
    images, labels = batch()
    _, mixed = mx.mix_with_partner(images, labels, 0.25, partner=tf.constant([1, 0, 3, 2]))
    np.testing.assert_allclose(mixed[0], [0.25, 0.75, 0.0], rtol=1e-6)


def test_alpha_zero_is_identity():
    images, labels = batch()
    out_images, out_labels = mx.mixup(images, labels, 0.0)
    assert out_images is images and out_labels is labels


def test_negative_alpha_is_rejected():
    images, labels = batch()
    with pytest.raises(ValueError, match="alpha=-1"):
        mx.mixup(images, labels, -1.0)


def test_mixup_is_one_convex_combination_per_batch():
    images, labels = batch(size=8, classes=8)  # label i == example i
    mixed_images, mixed_labels = mx.mixup(images, labels, 0.4, seed=[5, 6])
    mixed_labels = mixed_labels.numpy()
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, rtol=1e-6)
    others = mixed_labels.copy()
    others[np.arange(8), np.arange(8)] = 0.0
    partner = np.where(others.max(axis=1) > 0, others.argmax(axis=1), np.arange(8))
    assert sorted(partner) == list(range(8))  # a permutation
    lam = 1.0 - others.max()
    assert 0.0 <= lam <= 1.0 and np.allclose(others.max(axis=1)[partner != np.arange(8)], 1 - lam)
    expected = lam * np.arange(8) + (1.0 - lam) * partner
    np.testing.assert_allclose(mixed_images[:, 0, 0, 0], expected, rtol=1e-5, atol=1e-5)
    again = mx.mixup(images, labels, 0.4, seed=[5, 6])[0]
    np.testing.assert_array_equal(mixed_images, again)


def test_sample_beta_in_unit_interval():
    samples = [float(mx.sample_beta(0.2, tf.constant([i, 0]))) for i in range(20)]
    assert all(0.0 <= s <= 1.0 for s in samples)


def test_smooth_labels_golden_values():
    onehot = tf.constant([[0.0, 1.0, 0.0, 0.0]])
    np.testing.assert_allclose(mx.smooth_labels(onehot, 0.1), [[0.025, 0.925, 0.025, 0.025]],
                               rtol=1e-6)
    np.testing.assert_array_equal(mx.smooth_labels(onehot, 0.0), onehot)
    with pytest.raises(ValueError, match="smoothing=1.5"):
        mx.smooth_labels(onehot, 1.5)


def test_smooth_labels_matches_keras_label_smoothing():
    labels = tf.one_hot([2, 0, 1], 5)
    logits = tf.random.stateless_normal([3, 5], [0, 1])
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)
    plain_loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(keras_loss(labels, logits),
                               plain_loss(mx.smooth_labels(labels, 0.2), logits), rtol=1e-6)
