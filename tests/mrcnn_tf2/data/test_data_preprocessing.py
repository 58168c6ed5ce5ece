"""mrcnn_tf2.data.preprocessing: goldens of the resize, normalise, pad, flip and crop helpers.

Named test_data_preprocessing so that it does not clash with
tests/efficientnet_tf2/test_preprocessing.py (the test folders have no __init__.py).
"""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mrcnn_tf2.data import preprocessing as prep
from mrcnn_tf2.data.inputs import InputConfig

SMALL = InputConfig(image_size=(4, 6), pad_multiple=4, mean=(10.0, 20.0, 30.0),
                    std=(2.0, 4.0, 5.0))


@pytest.mark.parametrize("hw, padded, expected", [
    ((480, 640), None, 832 / 480),            # landscape: short side -> 832
    ((480, 640), (832, 1344), 832 / 480),
    ((100, 1000), None, 1344 / 1000),         # very wide: long side capped
    ((640, 480), None, 832 / 480),            # portrait, unpadded
    ((640, 480), (832, 1344), 832 / 640),     # portrait must fit 832 rows
])
def test_resize_scale(hw, padded, expected):
    scale = prep.resize_scale(hw[0], hw[1], (832, 1344), padded)
    assert scale.dtype == tf.float32
    np.testing.assert_allclose(scale.numpy(), expected, rtol=1e-6)


def test_scaled_size_rounds_and_fits():
    np.testing.assert_array_equal(prep.scaled_size(48, 64, 2.0 / 3.0), [32, 43])
    scale = prep.resize_scale(640, 480, (832, 1344), (832, 1344))
    np.testing.assert_array_equal(prep.scaled_size(640, 480, scale, (832, 1344)), [832, 624])


def test_normalize_image():
    image = tf.constant([[[10, 20, 30], [12, 24, 35]]], tf.uint8)
    out = prep.normalize_image(image, SMALL.mean, SMALL.std)
    np.testing.assert_allclose(out.numpy(), [[[0, 0, 0], [1, 1, 1]]])


def test_round_up_and_pad_to():
    np.testing.assert_array_equal(prep.round_up_size([65, 64], 64), [128, 64])
    image = tf.reshape(tf.range(1.0, 7.0), [2, 3, 1])
    out = prep.pad_to(image, (4, 4))
    assert out.shape == (4, 4, 1)
    expected = np.zeros((4, 4, 1), np.float32)
    expected[:2, :3, 0] = [[1, 2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(out.numpy(), expected)


def test_flip_boxes_and_masks():
    boxes = tf.constant([[1.0, 2.0, 5.0, 7.0], [0.0, 0.0, 3.0, 10.0]])
    np.testing.assert_allclose(prep.flip_boxes(boxes, 10).numpy(),
                               [[1, 3, 5, 8], [0, 0, 3, 10]])
    masks = tf.constant([[[1, 0, 0], [1, 1, 0]]], tf.uint8)
    np.testing.assert_array_equal(prep.flip_masks(masks).numpy(), [[[0, 0, 1], [0, 1, 1]]])


def test_crop_masks_to_boxes_goldens():
    masks = np.zeros((2, 4, 6), np.uint8)
    masks[0, 1:3, 2:5] = 1           # block covering box (1, 2, 3, 5) exactly
    masks[1, :, :3] = 1              # left half
    boxes = tf.constant([[1.0, 2.0, 3.0, 5.0], [0.0, 0.0, 4.0, 6.0]])
    crops = prep.crop_masks_to_boxes(tf.constant(masks), boxes, 2)
    assert crops.shape == (2, 2, 2) and crops.dtype == tf.float32
    np.testing.assert_allclose(crops[0].numpy(), np.ones((2, 2)), atol=1e-6)
    np.testing.assert_allclose(crops[1].numpy(), [[1, 0], [1, 0]], atol=1e-6)


def test_crop_masks_one_sample_per_pixel_is_exact():
    masks = np.random.default_rng(0).integers(0, 2, (1, 5, 7)).astype(np.uint8)
    crop = prep.crop_masks_to_boxes(tf.constant(masks), tf.constant([[0.0, 1.0, 5.0, 6.0]]), 5)
    np.testing.assert_allclose(crop[0].numpy(), masks[0, :, 1:6], atol=1e-6)
    empty = prep.crop_masks_to_boxes(tf.zeros([0, 5, 7], tf.uint8), tf.zeros([0, 4]), 3)
    assert empty.shape == (0, 3, 3)


def test_pad_instances():
    values = tf.constant([[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(prep.pad_instances(values, 2, -1).numpy(), [[1, 2], [3, 4]])
    padded = prep.pad_instances(values, 4, -1)
    assert padded.shape == (4, 2)
    np.testing.assert_array_equal(padded.numpy(), [[1, 2], [3, 4], [5, 6], [-1, -1]])


def test_preprocess_image_golden():
    image = tf.fill([2, 3, 3], tf.constant(14, tf.uint8))
    out, info = prep.preprocess_image(image, SMALL)
    np.testing.assert_allclose(info.numpy(), [4, 6, 2, 2, 3])
    assert out.shape == (4, 8, 3)
    np.testing.assert_allclose(out[:4, :6].numpy(), np.broadcast_to([2.0, -1.5, -3.2], (4, 6, 3)),
                               rtol=1e-6)
    np.testing.assert_array_equal(out[:, 6:].numpy(), 0.0)


def test_preprocess_image_portrait_fits_fixed_padding():
    image = tf.zeros([6, 2, 3], tf.uint8)
    out, info = prep.preprocess_image(image, SMALL, padded_size=(4, 8))
    assert out.shape == (4, 8, 3)
    np.testing.assert_allclose(info.numpy(), [4, 1, 4 / 6, 6, 2], rtol=1e-6)


def test_preprocess_image_in_serving_function_with_unknown_size():
    serve = tf.function(lambda x: prep.preprocess_image(x, SMALL),
                        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    out, info = serve(tf.zeros([5, 3, 3], tf.uint8))   # scale min(4/3, 6/5) = 1.2 -> 6 x 4
    np.testing.assert_allclose(info.numpy(), [6, 4, 1.2, 5, 3], rtol=1e-6)
    assert out.shape == (8, 4, 3)


@pytest.mark.parametrize("mode, colour", [("L", 128), ("RGBA", (10, 200, 30, 128))])
def test_decode_image_gives_rgb(mode, colour):
    buffer = io.BytesIO()
    Image.new(mode, (5, 4), colour).save(buffer, format="PNG")
    image = prep.decode_image(tf.constant(buffer.getvalue()))
    assert image.shape == (4, 5, 3) and image.dtype == tf.uint8
    expected = (128, 128, 128) if mode == "L" else (10, 200, 30)
    np.testing.assert_array_equal(image[0, 0].numpy(), expected)


def test_input_config_validation_and_padded_size():
    assert InputConfig().batch_padded_size() == (832, 1344)
    assert InputConfig(image_size=(800, 1333)).batch_padded_size() == (832, 1344)
    assert InputConfig(padded_size=(64, 96)).batch_padded_size() == (64, 96)
    with pytest.raises(ValueError, match="image_size"):
        InputConfig(image_size=(0, 10))
    with pytest.raises(ValueError, match="max_instances"):
        InputConfig(max_instances=0)
