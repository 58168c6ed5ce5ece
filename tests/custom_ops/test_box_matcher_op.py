"""custom_ops/box_matcher: the fused IoU matcher against match(box_ops.iou(...))."""
import numpy as np
import pytest
import tensorflow as tf

from custom_ops.box_matcher import ops as fused_ops
from mrcnn_tf2.ops import box_ops, matcher

pytestmark = pytest.mark.skipif(not fused_ops.available(), reason="box_matcher op library unavailable")

RPN = dict(high=0.7, low=0.3, allow_low_quality=True)
FAST_RCNN = dict(high=0.5, low=0.5, allow_low_quality=False)


def random_boxes(rng, shape, extent=100.0, max_size=40.0):
    """``shape + [4]`` float32 boxes inside ``[0, extent]``-ish."""
    corner = rng.uniform(-10, extent, shape + (2,))
    return np.concatenate([corner, corner + rng.uniform(0, max_size, shape + (2,))], -1).astype(np.float32)


def assert_same(boxes, gt, gt_valid=None, **settings):
    """Fused and plain matches agree exactly."""
    fused = fused_ops.match_boxes(boxes, gt, gt_valid, **settings)
    plain = matcher.match(box_ops.iou(boxes, gt), gt_valid=gt_valid, **settings)
    for got, want, name in zip(fused, plain, matcher.Match._fields):
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    return matcher.Match(*fused)


@pytest.mark.parametrize("settings", [RPN, FAST_RCNN, dict(high=0.6, low=0.2, allow_low_quality=True)])
def test_matches_plain_on_random_boxes(settings):
    rng = np.random.default_rng(0)
    boxes, gt = random_boxes(rng, (3, 5000)), random_boxes(rng, (3, 12), max_size=60.0)
    valid = rng.random((3, 12)) > 0.3
    out = assert_same(boxes, gt, valid, **settings)
    assert set(np.unique(out.labels)) >= {0, 1}
    assert_same(boxes[:1], gt, valid, **settings)  # anchors shared by all images


def test_ties_first_gt_wins_and_all_best_predictions_are_foreground():
    rng = np.random.default_rng(1)
    gt = random_boxes(rng, (2, 4))
    gt[:, 2] = gt[:, 0]  # duplicate GT: equal IoUs, lower column must win
    boxes = np.concatenate([random_boxes(rng, (2, 300)), gt, gt], axis=1)  # duplicated best predictions
    out = assert_same(boxes, gt, **RPN)
    assert not (out.matched_idx.numpy() == 2).any()
    assert_same(np.round(boxes / 8) * 8, np.round(gt / 8) * 8, **RPN)  # many exactly equal IoUs


def test_zero_size_outside_and_invalid_gt():
    rng = np.random.default_rng(2)
    boxes, gt = random_boxes(rng, (2, 400)), random_boxes(rng, (2, 6))
    boxes[:, ::5, 2] = boxes[:, ::5, 0]  # zero-height predictions
    boxes[:, 1::7] += 1000.0  # far outside every GT
    gt[0, 1] = [5, 5, 5, 9]  # zero-size GT
    gt[1, 2] = -1.0  # NVIDIA-style padding row
    gt[1, 3] = [50, 50, 40, 40]  # inverted GT
    for settings in (RPN, FAST_RCNN):
        assert_same(boxes, gt, box_ops.valid_box_mask(gt), **settings)
        assert_same(boxes, gt, **settings)
    assert_same(boxes, gt, np.zeros((2, 6), bool), **RPN)  # no valid GT at all


def test_empty_inputs_and_unbatched():
    rng = np.random.default_rng(3)
    boxes, gt = random_boxes(rng, (2, 50)), random_boxes(rng, (2, 5))
    assert_same(boxes, gt[:, :0], **RPN)  # M = 0
    assert_same(boxes[:, :0], gt, **RPN)  # N = 0
    assert_same(boxes[:0], gt[:0], **RPN)  # B = 0
    assert_same(boxes[0], gt[0], **RPN)  # [N, 4] x [M, 4]


def test_match_boxes_uses_op_when_fused_and_plain_tf_otherwise():
    rng = np.random.default_rng(4)
    boxes, gt = random_boxes(rng, (1, 200)), random_boxes(rng, (2, 5))

    def fn(fused):
        return matcher.match_boxes(boxes, gt, **RPN, fused=fused)

    def uses_op(fused):
        graph = tf.function(lambda: fn(fused), autograph=False).get_concrete_function().graph
        return any(op.type == fused_ops.OP_NAME for op in graph.get_operations())

    assert uses_op(True)
    assert not uses_op(False)
    plain = fn(False)
    for got, want in zip(fn(True), plain):
        np.testing.assert_array_equal(got, want)


def test_invalid_arguments():
    rng = np.random.default_rng(5)
    boxes, gt = random_boxes(rng, (2, 10)), random_boxes(rng, (2, 3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="boxes must be"):
        fused_ops.match_boxes(np.concatenate([boxes] * 2), gt, None, **RPN)  # batch 4 vs 2
    with pytest.raises(tf.errors.InvalidArgumentError, match="gt_valid must be"):
        fused_ops.match_boxes(boxes, gt, np.ones((2, 4), bool), **RPN)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="low <= high"):
        matcher.match_boxes(boxes, gt, high=0.3, low=0.7)
