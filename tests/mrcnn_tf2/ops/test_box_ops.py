"""box_ops: encode/decode round trip and goldens, IoU against a numpy loop, clipping, helpers."""
import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf2.ops import box_ops


def random_boxes(rng, n, size=100.0, max_side=50.0):
    """[n, 4] float32 positive-size boxes (ymin, xmin, ymax, xmax)."""
    top_left = rng.uniform(0, size, (n, 2))
    sides = rng.uniform(1.0, max_side, (n, 2))
    return np.concatenate([top_left, top_left + sides], axis=1).astype(np.float32)


def iou_loop(a, b):
    """Brute-force IoU: [N, 4] x [M, 4] -> [N, M] float64."""
    out = np.zeros((len(a), len(b)))
    for i, (ay0, ax0, ay1, ax1) in enumerate(a.astype(np.float64)):
        for j, (by0, bx0, by1, bx1) in enumerate(b.astype(np.float64)):
            ih = max(min(ay1, by1) - max(ay0, by0), 0.0)
            iw = max(min(ax1, bx1) - max(ax0, bx0), 0.0)
            union = max(ay1 - ay0, 0) * max(ax1 - ax0, 0) + max(by1 - by0, 0) * max(bx1 - bx0, 0) - ih * iw
            out[i, j] = ih * iw / union if union > 0 else 0.0
    return out


@pytest.mark.parametrize("weights", [box_ops.DEFAULT_WEIGHTS, (1.0, 1.0, 1.0, 1.0)])
def test_encode_decode_round_trip(weights):
    rng = np.random.default_rng(0)
    boxes, anchors = random_boxes(rng, 200), random_boxes(rng, 200)
    deltas = box_ops.encode_boxes(boxes, anchors, weights)
    np.testing.assert_allclose(box_ops.decode_boxes(deltas, anchors, weights), boxes, rtol=1e-5, atol=1e-3)


def test_encode_golden():
    anchor = np.array([[10.0, 20.0, 30.0, 60.0]], np.float32)  # h=20, w=40, centre (20, 40)
    same = box_ops.encode_boxes(anchor, anchor)
    np.testing.assert_allclose(same, [[0, 0, 0, 0]], atol=1e-7)
    moved = np.array([[20.0, 20.0, 40.0, 140.0]], np.float32)  # centre (30, 80), h=20, w=120
    expected = [10 * 10 / 20, 10 * 40 / 40, 5 * math.log(1.0), 5 * math.log(3.0)]
    np.testing.assert_allclose(box_ops.encode_boxes(moved, anchor), [expected], rtol=1e-6)


def test_decode_clips_scale_at_log_1000_over_16():
    anchor = tf.constant([[0.0, 0.0, 16.0, 16.0]])
    boxes = box_ops.decode_boxes(tf.constant([[0.0, 0.0, 100.0, 100.0]]), anchor)
    np.testing.assert_allclose(boxes, [[8 - 500, 8 - 500, 8 + 500, 8 + 500]], rtol=1e-5)


def test_encode_broadcasts_and_returns_float32():
    anchors = tf.constant([[0.0, 0.0, 10.0, 10.0]], tf.float16)
    boxes = tf.zeros([3, 5, 4], tf.float16) + tf.constant([1.0, 1.0, 9.0, 12.0], tf.float16)
    deltas = box_ops.encode_boxes(boxes, anchors)
    assert deltas.shape == (3, 5, 4) and deltas.dtype == tf.float32


def test_iou_matches_numpy_loop_with_degenerate_boxes():
    rng = np.random.default_rng(1)
    a = random_boxes(rng, 30)
    b = random_boxes(rng, 20)
    a[0] = [5, 5, 5, 20]              # zero height
    a[1] = [0, 0, 0, 0]               # a point
    b[0] = [300, 300, 310, 310]       # disjoint from everything
    b[1] = a[2]                       # identical to a[2]
    b[2] = [-1, -1, -1, -1]           # GT-style padding
    b[3] = [50, 50, 40, 40]           # inverted
    got = box_ops.iou(a, b).numpy()
    np.testing.assert_allclose(got, iou_loop(a, b), atol=1e-6)
    assert got[2, 1] == pytest.approx(1.0)
    assert not np.isnan(got).any()


def test_iou_batched_equals_per_image():
    rng = np.random.default_rng(2)
    a = np.stack([random_boxes(rng, 7) for _ in range(3)])
    b = np.stack([random_boxes(rng, 4) for _ in range(3)])
    got = box_ops.iou(a, b)
    assert got.shape == (3, 7, 4)
    for i in range(3):
        np.testing.assert_allclose(got[i], iou_loop(a[i], b[i]), atol=1e-6)


def test_iou_empty_sets():
    assert box_ops.iou(tf.zeros([0, 4]), tf.ones([5, 4])).shape == (0, 5)
    assert box_ops.iou(tf.ones([2, 3, 4]), tf.zeros([2, 0, 4])).shape == (2, 3, 0)


def test_clip_boxes_scalar_and_per_image_shape():
    boxes = tf.constant([[[-5.0, 3.0, 120.0, 90.0]], [[-5.0, 3.0, 120.0, 90.0]]])
    np.testing.assert_allclose(box_ops.clip_boxes(boxes[0], (100, 80)), [[0, 3, 100, 80]])
    per_image = tf.constant([[[100, 80]], [[50, 200]]])
    np.testing.assert_allclose(box_ops.clip_boxes(boxes, per_image), [[[0, 3, 100, 80]], [[0, 3, 50, 90]]])


def test_areas_and_valid_mask():
    boxes = tf.constant([[0.0, 0.0, 2.0, 3.0], [5.0, 5.0, 5.0, 9.0], [4.0, 4.0, 2.0, 8.0], [-1, -1, -1, -1]])
    np.testing.assert_allclose(box_ops.box_areas(boxes), [6, 0, 0, 0])
    np.testing.assert_array_equal(box_ops.valid_box_mask(boxes), [True, False, False, False])
    np.testing.assert_array_equal(box_ops.valid_box_mask(boxes, min_size=2.0), [False] * 4)


def test_normalize_denormalize_and_scale():
    boxes = tf.constant([[10.0, 20.0, 50.0, 80.0]])
    norm = box_ops.normalize_boxes(boxes, (100, 200))
    np.testing.assert_allclose(norm, [[0.1, 0.1, 0.5, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(box_ops.denormalize_boxes(norm, (100, 200)), boxes, rtol=1e-6)
    np.testing.assert_allclose(box_ops.scale_boxes(boxes, 2.0), [[20, 40, 100, 160]])
    np.testing.assert_allclose(box_ops.scale_boxes(boxes, [0.5, 2.0]), [[5, 40, 25, 160]])
    np.testing.assert_allclose(box_ops.scale_boxes(boxes[None], tf.constant([[[3.0]]])), [[[30, 60, 150, 240]]])
