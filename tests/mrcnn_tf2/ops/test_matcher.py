"""matcher: thresholds, ignore band, low-quality matches, GT padding, empty GT."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf2.ops.matcher import match

# 6 anchors x 3 GT.
IOU = np.array([[0.80, 0.10, 0.00],   # fg (GT 0)
                [0.70, 0.69, 0.00],   # fg at exactly high
                [0.50, 0.40, 0.00],   # ignore band
                [0.30, 0.00, 0.00],   # exactly low -> ignore
                [0.29, 0.05, 0.00],   # bg
                [0.10, 0.65, 0.00]],  # ignore band, matched to GT 1
               np.float32)


def test_rpn_thresholds_and_ignore_band():
    found = match(IOU, high=0.7, low=0.3, allow_low_quality=False)
    np.testing.assert_array_equal(found.labels, [1, 1, -1, -1, 0, -1])
    np.testing.assert_array_equal(found.matched_idx, [0, 0, 0, 0, 0, 1])
    np.testing.assert_allclose(found.max_iou, IOU.max(axis=1))


def test_low_quality_matches_give_every_gt_its_best_anchor():
    iou = np.array([[0.40, 0.00], [0.20, 0.35], [0.40, 0.10], [0.10, 0.20]], np.float32)
    plain = match(iou, 0.7, 0.3, allow_low_quality=False)
    np.testing.assert_array_equal(plain.labels, [-1, -1, -1, 0])
    found = match(iou, 0.7, 0.3, allow_low_quality=True)
    np.testing.assert_array_equal(found.labels, [1, 1, 1, 0])  # both ties of GT 0, and GT 1's best
    np.testing.assert_array_equal(found.matched_idx, [0, 1, 0, 1])


def test_low_quality_keeps_argmax_gt_and_skips_gt_without_overlap():
    iou = np.array([[0.50, 0.45, 0.0], [0.10, 0.20, 0.0]], np.float32)
    found = match(iou, 0.7, 0.3, allow_low_quality=True)
    # anchor 0 is GT 1's best but keeps its argmax GT 0 (detectron2); GT 2 overlaps nothing.
    np.testing.assert_array_equal(found.labels, [1, 0])
    np.testing.assert_array_equal(found.matched_idx, [0, 1])


def test_fast_rcnn_thresholds_have_no_ignore_band():
    iou = np.array([[0.5, 0.1], [0.49, 0.2], [0.0, 0.0], [0.3, 0.95]], np.float32)
    found = match(iou, high=0.5, low=0.5, allow_low_quality=False)
    np.testing.assert_array_equal(found.labels, [1, 0, 0, 1])
    np.testing.assert_array_equal(found.matched_idx, [0, 0, 0, 1])


def test_padded_gt_columns_are_ignored():
    iou = np.array([[0.2, 0.9], [0.8, 0.0]], np.float32)
    found = match(iou, 0.7, 0.3, allow_low_quality=True, gt_valid=[True, False])
    np.testing.assert_array_equal(found.labels, [0, 1])
    np.testing.assert_array_equal(found.matched_idx, [0, 0])


@pytest.mark.parametrize("num_gt", [0, 2])
def test_no_valid_gt_is_all_background(num_gt):
    iou = tf.fill([5, num_gt], 0.9)
    found = match(iou, 0.7, 0.3, allow_low_quality=True, gt_valid=tf.zeros([num_gt], tf.bool))
    np.testing.assert_array_equal(found.labels, [0] * 5)
    np.testing.assert_array_equal(found.matched_idx, [0] * 5)
    np.testing.assert_array_equal(found.max_iou, [0.0] * 5)


def test_batched_equals_per_image():
    rng = np.random.default_rng(0)
    iou = rng.uniform(0, 1, (3, 20, 4)).astype(np.float32)
    valid = rng.uniform(size=(3, 4)) > 0.3
    batched = match(iou, 0.7, 0.3, True, valid)
    for i in range(3):
        single = match(iou[i], 0.7, 0.3, True, valid[i])
        np.testing.assert_array_equal(batched.labels[i], single.labels)
        np.testing.assert_array_equal(batched.matched_idx[i], single.matched_idx)


def test_rejects_low_above_high():
    with pytest.raises(ValueError, match="Received"):
        match(IOU, high=0.3, low=0.7)
