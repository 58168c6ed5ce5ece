"""Tests for efficientnet_tf2.preprocessing."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf2 import preprocessing as pp

SEED = tf.constant([1, 2])


def encode(array, fmt):
    """[H, W, 3] uint8 numpy -> encoded bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


def test_normalize_golden_values():
    mean = np.array(pp.MEAN_RGB, np.float32)
    std = np.array(pp.STDDEV_RGB, np.float32)
    images = np.stack([np.broadcast_to(mean, [2, 2, 3]), np.broadcast_to(mean + std, [2, 2, 3])])
    out = pp.normalize(tf.constant(images))
    assert out.dtype == tf.float32 and out.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(out[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[1], 1.0, atol=1e-6)
    uint8 = pp.normalize(tf.constant([[[0, 128, 255]]], tf.uint8))
    np.testing.assert_allclose(uint8[0, 0], (np.array([0, 128, 255]) - mean) / std, rtol=1e-6)


def test_sample_crop_box_respects_scale_ratio_and_bounds():
    for i in range(50):
        y, x, h, w = pp.sample_crop_box(tf.constant([120, 90]), seed=[i, 0]).numpy()
        assert 0 <= y and 0 <= x and y + h <= 120 and x + w <= 90
        assert 0.08 * 0.9 <= h * w / (120 * 90) <= 1.0
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1


@pytest.mark.parametrize("shape,box", [
    ((100, 20), (36, 0, 27, 20)),   # too tall: width kept, height = 20 / (3/4)
    ((20, 100), (0, 36, 20, 27)),   # too wide: height kept, width = 20 * 4/3
    ((30, 30), (0, 0, 30, 30)),     # ratio in range: whole image
])
def test_sample_crop_box_falls_back_to_torchvision_centre_crop(shape, box):
    got = pp.sample_crop_box(tf.constant(shape), scale=(2.0, 3.0), seed=SEED)
    assert tuple(got.numpy()) == box


def test_random_resized_crop_shape_dtype_and_seed(rgb_image):
    a = pp.random_resized_crop(rgb_image, 16, seed=SEED)
    b = pp.random_resized_crop(rgb_image, 16, seed=SEED)
    assert a.shape == (16, 16, 3) and a.dtype == tf.uint8
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_decode_and_random_crop_matches_decode_then_crop(fmt):
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    image[:, :32] = (250, 10, 10)
    data = encode(image, fmt)
    fused = pp.decode_and_random_crop(tf.constant(data), 20, seed=SEED)
    unfused = pp.random_resized_crop(pp.decode_image(tf.constant(data)), 20, seed=SEED)
    assert fused.shape == (20, 20, 3) and fused.dtype == tf.uint8
    diff = np.abs(fused.numpy().astype(int) - unfused.numpy().astype(int))
    assert diff.mean() < 2.0  # JPEG crop decoding may differ slightly at block edges.


def test_random_flip_is_identity_or_mirror(rgb_image):
    seen = set()
    for i in range(10):
        out = pp.random_flip(rgb_image, seed=[i, 3]).numpy()
        flipped = (out == rgb_image[:, ::-1]).all()
        assert flipped or (out == rgb_image).all()
        seen.add(bool(flipped))
    assert seen == {True, False}


def test_eval_resize_crop_is_centre_crop_after_short_side_resize():
    image = np.random.default_rng(4).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    out = pp.eval_resize_crop(image, 8)  # 40 = 8 + 32: resize is the identity.
    assert out.dtype == tf.uint8
    np.testing.assert_array_equal(out, image[16:24, 16:24])


@pytest.mark.parametrize("shape", [(20, 64), (64, 20), (300, 500)])
def test_eval_resize_crop_shapes(shape):
    image = tf.zeros(shape + (3,), tf.uint8)
    assert pp.eval_resize_crop(image, 24).shape == (24, 24, 3)


def test_eval_resize_crop_keeps_aspect_ratio():
    image = np.zeros((20, 80, 3), np.uint8)
    image[:, 40:] = 255  # Right half white: centre column is the boundary.
    out = pp.eval_resize_crop(image, 8).numpy()  # resized to 40 x 160.
    assert (out[:, :3] < 10).all() and (out[:, 5:] > 245).all()  # bilinear edge at 3..4


def test_preprocess_for_eval_is_normalized_crop(rgb_image):
    out = pp.preprocess_for_eval(rgb_image, 16)
    assert out.shape == (16, 16, 3) and out.dtype == tf.float32
    np.testing.assert_allclose(out, pp.normalize(pp.eval_resize_crop(rgb_image, 16)))


@pytest.mark.parametrize("augment", pp.AUGMENTATIONS)
def test_preprocess_for_train_shapes(augment, rgb_image):
    out = pp.preprocess_for_train(rgb_image, 16, augment, seed=SEED)
    assert out.shape == (16, 16, 3) and out.dtype == tf.float32
    again = pp.preprocess_for_train(rgb_image, 16, augment, seed=SEED)
    np.testing.assert_array_equal(out, again)


def test_preprocess_for_train_in_graph_without_seed(rgb_image):
    fn = tf.function(lambda x: pp.preprocess_for_train(x, 12, "none"))
    assert fn(tf.constant(rgb_image)).shape == (12, 12, 3)


def test_unknown_augment_is_rejected(rgb_image):
    with pytest.raises(ValueError, match="augment='randaugment'"):
        pp.preprocess_for_train(rgb_image, 16, "randaugment")


def test_decode_image_makes_rgb_from_gray_and_rgba():
    gray = io.BytesIO()
    Image.new("L", (5, 4), 77).save(gray, format="PNG")
    rgba = io.BytesIO()
    Image.new("RGBA", (5, 4), (1, 2, 3, 4)).save(rgba, format="PNG")
    np.testing.assert_array_equal(pp.decode_image(gray.getvalue()), np.full((4, 5, 3), 77))
    np.testing.assert_array_equal(pp.decode_image(rgba.getvalue())[0, 0], [1, 2, 3])
