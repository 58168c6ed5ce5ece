"""paste_masks: goldens, clipping, K = 0, dynamic shapes, brute-force bilinear reference."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf2.ops.paste_masks import paste_masks, paste_masks_numpy


def bilinear_zero_padded(mask, u, v):
    """Bilinear sample of ``mask [m, n]`` at (row u, col v); cells outside count as 0."""
    y0, x0 = int(np.floor(u)), int(np.floor(v))
    total = 0.0
    for dy, wy in ((0, 1.0 - (u - y0)), (1, u - y0)):
        for dx, wx in ((0, 1.0 - (v - x0)), (1, v - x0)):
            i, j = y0 + dy, x0 + dx
            if 0 <= i < mask.shape[0] and 0 <= j < mask.shape[1]:
                total += wy * wx * mask[i, j]
    return total


def paste_ref(masks, boxes, height, width):
    """detectron2 paste_masks_in_image (grid_sample, align_corners=False), float64 loops."""
    out = np.zeros((len(masks), height, width))
    for k, (mask, (y1, x1, y2, x2)) in enumerate(zip(masks, boxes)):
        m_y, m_x = mask.shape
        for y in range(height):
            u = (y + 0.5 - y1) * m_y / (y2 - y1) - 0.5
            for x in range(width):
                v = (x + 0.5 - x1) * m_x / (x2 - x1) - 0.5
                out[k, y, x] = bilinear_zero_padded(mask, u, v)
    return out


def test_golden_ones_mask_fills_its_box_exactly():
    pasted = paste_masks(np.ones((1, 2, 2), np.float32), [[1.0, 1.0, 3.0, 3.0]], (5, 5))
    expected = np.zeros((1, 5, 5), np.float32)
    expected[0, 1:3, 1:3] = 1.0
    np.testing.assert_array_equal(pasted.numpy(), expected)


def test_threshold_gives_uint8():
    masks = np.array([[[0.2, 0.9], [0.9, 0.9]]], np.float32)
    pasted = paste_masks(masks, [[0.0, 0.0, 2.0, 2.0]], (3, 3), threshold=0.5)
    assert pasted.dtype == tf.uint8
    np.testing.assert_array_equal(pasted.numpy()[0], [[0, 1, 0], [1, 1, 0], [0, 0, 0]])


def test_box_partly_outside_the_image_is_cut_off():
    masks = np.ones((1, 4, 4), np.float32)
    pasted = paste_masks(masks, [[-2.0, 3.0, 2.0, 7.0]], (4, 5)).numpy()[0]
    expected = np.zeros((4, 5), np.float32)
    expected[0:2, 3:5] = 1.0
    np.testing.assert_array_equal(pasted, expected)


def test_no_detections():
    pasted = paste_masks(np.zeros((0, 28, 28), np.float32), np.zeros((0, 4), np.float32),
                         (6, 7))
    assert pasted.shape == (0, 6, 7)
    assert paste_masks_numpy(np.zeros((0, 28, 28)), np.zeros((0, 4)), (6, 7), 0.5).shape \
        == (0, 6, 7)


def test_tf_function_with_unknown_image_size():
    fn = tf.function(paste_masks, input_signature=[
        tf.TensorSpec([None, 28, 28], tf.float32), tf.TensorSpec([None, 4], tf.float32),
        tf.TensorSpec([2], tf.int32)])
    masks = np.ones((2, 28, 28), np.float32)
    boxes = np.array([[0, 0, 4, 4], [2, 3, 6, 9]], np.float32)
    for height, width in ((7, 9), (11, 5)):
        out = fn(masks, boxes, tf.constant([height, width]))
        assert out.shape == (2, height, width)
        np.testing.assert_allclose(out.numpy(), paste_masks(masks, boxes, (height, width)))


@pytest.mark.parametrize("mask_size", [3, 28])
def test_matches_brute_force_bilinear_reference(mask_size):
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(3, mask_size, mask_size)).astype(np.float32)
    boxes = np.array([[1.3, 2.1, 7.7, 5.4], [-3.0, 4.2, 5.5, 14.0], [0.0, 0.0, 9.0, 11.0]],
                     np.float32)
    got = paste_masks(masks, boxes, (9, 11)).numpy()
    np.testing.assert_allclose(got, paste_ref(masks, boxes, 9, 11), atol=1e-5)
    np.testing.assert_array_equal(paste_masks_numpy(masks, boxes, (9, 11)), got)
    np.testing.assert_array_equal(paste_masks_numpy(masks, boxes, (9, 11), 0.5),
                                  (got >= 0.5).astype(np.uint8))
