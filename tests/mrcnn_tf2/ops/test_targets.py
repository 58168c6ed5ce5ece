"""targets: RPN anchor targets and RoI sampling, incl. padded and empty GT."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf2.ops import box_ops
from mrcnn_tf2.ops.anchors import AnchorGenerator
from mrcnn_tf2.ops.targets import RPN_WEIGHTS, assign_rpn_targets, gt_valid_mask, sample_rois

ANCHORS = AnchorGenerator().concatenated((128, 128))  # [4092, 4]
GT = np.array([[[10.0, 12.0, 50.0, 44.0], [60.0, 30.0, 120.0, 110.0], [3.0, 90.0, 20.0, 100.0]]], np.float32)


def pad(gt, rows, value):
    """Appends ``rows`` padding rows filled with ``value`` to [B, M, ...]."""
    shape = (gt.shape[0], rows) + gt.shape[2:]
    return np.concatenate([gt, np.full(shape, value, gt.dtype)], axis=1)


def test_rpn_labels_respect_thresholds_and_every_gt_gets_an_anchor():
    t = assign_rpn_targets(ANCHORS, GT, seed=(1, 2), num_samples=4092)  # keep every labelled anchor
    labels = t.gt_objectness.numpy()[0]
    iou = box_ops.iou(ANCHORS, GT[0]).numpy()
    best = iou.max(axis=1)
    low_quality = (iou == iou.max(axis=0, keepdims=True)).any(axis=1)
    np.testing.assert_array_equal(labels == 1, (best >= 0.7) | low_quality)
    np.testing.assert_array_equal(labels == 0, (best < 0.3) & ~low_quality)
    assert set(t.gt_indices.numpy()[0][labels == 1].tolist()) == {0, 1, 2}


def test_rpn_sample_counts_and_deltas_decode_to_gt():
    t = assign_rpn_targets(ANCHORS, GT, seed=(1, 2))
    labels = t.gt_objectness.numpy()[0]
    num_fg, num_bg = (labels == 1).sum(), (labels == 0).sum()
    assert 0 < num_fg <= 128 and num_fg + num_bg == 256
    fg = labels == 1
    decoded = box_ops.decode_boxes(t.gt_deltas[0], ANCHORS, RPN_WEIGHTS).numpy()[fg]
    np.testing.assert_allclose(decoded, GT[0][t.gt_indices.numpy()[0][fg]], atol=1e-3)
    assert not t.gt_deltas.numpy()[0][~fg].any()
    assert (t.gt_indices.numpy()[0][~fg] == -1).all()


@pytest.mark.parametrize("value", [-1.0, 0.0])
def test_rpn_padded_gt_gives_the_same_targets(value):
    plain = assign_rpn_targets(ANCHORS, GT, seed=(3, 4))
    padded = assign_rpn_targets(ANCHORS, pad(GT, 5, value), seed=(3, 4))
    for a, b in zip(plain, padded):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("gt", [np.zeros((2, 0, 4), np.float32), -np.ones((2, 4, 4), np.float32)])
def test_rpn_empty_gt_is_all_background(gt):
    t = assign_rpn_targets(ANCHORS, gt, seed=(5, 6))
    np.testing.assert_array_equal((t.gt_objectness.numpy() == 0).sum(axis=1), [256, 256])
    assert (t.gt_objectness.numpy() != 1).all()
    assert np.isfinite(t.gt_deltas.numpy()).all() and not t.gt_deltas.numpy().any()


def random_proposals(rng, batch, num, size=128.0):
    """[B, P, 4] float32 proposals inside the image."""
    top_left = rng.uniform(0, size - 10, (batch, num, 2))
    sides = rng.uniform(4, 60, (batch, num, 2))
    return np.minimum(np.concatenate([top_left, top_left + sides], -1), size).astype(np.float32)


def test_sample_rois_targets():
    rng = np.random.default_rng(0)
    proposals = random_proposals(rng, 1, 300)
    classes = np.array([[3, 7, 1]], np.int32)
    t = sample_rois(proposals, GT, classes, seed=(7, 8), num_samples=64)
    num_fg = int(t.num_positives[0])
    assert 3 <= num_fg <= 16 and t.valid.numpy().all()
    fg = np.arange(64) < num_fg
    rois, idx = t.rois.numpy()[0], t.gt_indices.numpy()[0]
    iou = box_ops.iou(rois, GT[0]).numpy()
    assert (iou[fg].max(axis=1) >= 0.5).all() and (iou[~fg].max(axis=1) < 0.5).all()
    np.testing.assert_array_equal(idx[fg], iou[fg].argmax(axis=1))
    np.testing.assert_array_equal(t.gt_classes.numpy()[0], np.where(fg, classes[0][np.maximum(idx, 0)], 0))
    np.testing.assert_array_equal(t.gt_boxes.numpy()[0][fg], GT[0][idx[fg]])
    decoded = box_ops.decode_boxes(t.gt_deltas[0], t.rois[0]).numpy()[fg]
    np.testing.assert_allclose(decoded, GT[0][idx[fg]], atol=1e-3)
    assert (idx[~fg] == -1).all() and not t.gt_deltas.numpy()[0][~fg].any()


def test_sample_rois_appends_gt_and_caps_fg_fraction():
    far = np.tile(np.array([[[0.0, 0.0, 2.0, 2.0]]], np.float32), (1, 600, 1))  # no overlap with GT
    t = sample_rois(far, GT, np.array([[1, 2, 3]]), seed=(0, 0))
    assert int(t.num_positives[0]) == 3  # only the appended GT boxes are fg
    np.testing.assert_allclose(t.rois.numpy()[0, :3][np.argsort(t.gt_indices.numpy()[0, :3])], GT[0])
    np.testing.assert_allclose(t.gt_deltas.numpy()[0, :3], 0.0, atol=1e-6)
    many = np.tile(GT[:, :1], (1, 600, 1))  # 600 copies of GT 0: fg only, no bg at all
    t = sample_rois(many, GT, np.array([[1, 2, 3]]), seed=(0, 0))
    assert int(t.num_positives[0]) == 128 and t.valid.numpy().sum() == 128  # 25 % of 512, not topped up
    assert (t.gt_classes.numpy()[0, :128] > 0).all() and not t.rois.numpy()[0, 128:].any()


@pytest.mark.parametrize("pad_class", [-1, 0])
def test_sample_rois_padded_gt_in_a_batch(pad_class):
    rng = np.random.default_rng(1)
    proposals = random_proposals(rng, 2, 200)
    boxes = np.concatenate([pad(GT, 2, -1.0), np.full((1, 5, 4), -1.0, np.float32)])
    boxes[1, 0] = [20, 20, 70, 90]  # image 1 has one instance
    classes = np.array([[3, 7, 1, pad_class, pad_class], [5] + [pad_class] * 4], np.int32)
    t = sample_rois(proposals, boxes, classes, seed=(9, 9), num_samples=64)
    assert t.rois.shape == (2, 64, 4)
    idx = t.gt_indices.numpy()
    assert set(idx[0][idx[0] >= 0].tolist()) <= {0, 1, 2} and set(idx[1][idx[1] >= 0].tolist()) == {0}
    assert set(t.gt_classes.numpy()[1].tolist()) == {0, 5}
    single = sample_rois(proposals[:1], GT, classes[:1, :3], seed=(9, 9), num_samples=64)
    assert int(single.num_positives[0]) == int(t.num_positives[0])


@pytest.mark.parametrize("num_gt", [0, 3])
def test_sample_rois_without_gt_is_all_background(num_gt):
    proposals = random_proposals(np.random.default_rng(2), 2, 100)
    t = sample_rois(proposals, -np.ones((2, num_gt, 4), np.float32), -np.ones((2, num_gt), np.int32),
                    seed=(1, 1), num_samples=32)
    assert t.valid.numpy().all() and not t.gt_classes.numpy().any()
    np.testing.assert_array_equal(t.num_positives, [0, 0])
    assert (t.gt_indices.numpy() == -1).all()
    for tensor in (t.rois, t.gt_deltas, t.gt_boxes):
        assert np.isfinite(tensor.numpy()).all()
    assert not t.gt_deltas.numpy().any()


def test_sample_rois_skips_invalid_proposals():
    proposals = random_proposals(np.random.default_rng(3), 1, 50)
    valid = np.arange(50)[None] < 10
    t = sample_rois(proposals, GT, np.array([[1, 2, 3]]), seed=(2, 2), proposals_valid=valid,
                    num_samples=64, append_gt=False)
    assert t.valid.numpy().sum() == 10
    kept = t.rois.numpy()[0][t.valid.numpy()[0]]
    assert {tuple(r) for r in kept} == {tuple(r) for r in proposals[0, :10]}


def test_gt_valid_mask():
    boxes = np.array([[1, 1, 5, 5], [-1, -1, -1, -1], [0, 0, 0, 0], [2, 2, 4, 4]], np.float32)
    np.testing.assert_array_equal(gt_valid_mask(boxes), [True, False, False, True])
    np.testing.assert_array_equal(gt_valid_mask(boxes, [3, -1, 0, 0]), [True, False, False, False])


def test_targets_work_in_tf_function():
    fn = tf.function(lambda p, b, c: sample_rois(p, b, c, seed=(4, 4), num_samples=32))
    proposals = random_proposals(np.random.default_rng(4), 1, 40)
    graph = fn(proposals, GT, np.array([[1, 2, 3]], np.int32))
    eager = sample_rois(proposals, GT, np.array([[1, 2, 3]], np.int32), seed=(4, 4), num_samples=32)
    np.testing.assert_array_equal(graph.rois, eager.rois)
