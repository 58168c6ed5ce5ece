"""losses: hand-computed RPN, Fast R-CNN and mask losses, empty cases, tf.function, fp16."""
import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf2.losses import fast_rcnn_losses, huber, mask_loss, rpn_losses
from mrcnn_tf2.ops.targets import RoiTargets, RpnTargets


def bce(logit, label):
    """Sigmoid cross-entropy of python floats."""
    return max(logit, 0.0) - logit * label + math.log1p(math.exp(-abs(logit)))


def huber_np(x, delta):
    """Element-wise Huber of a numpy array."""
    x = np.abs(np.asarray(x, np.float64))
    return np.where(x <= delta, 0.5 * x ** 2, delta * (x - 0.5 * delta))


def test_huber_golden():
    np.testing.assert_allclose(huber([0.05, -0.2, 2.0], 1 / 9),
                               [0.00125, (0.2 - 1 / 18) / 9, (2 - 1 / 18) / 9], rtol=1e-6)
    np.testing.assert_allclose(huber([0.5, -3.0], 1.0), [0.125, 2.5])


# RPN: level 2 has 2 anchors (H=2, W=1, A=1), level 3 has 1; dict given out of order.
RPN_SCORES = {3: np.array([[[[0.5]]]], np.float32), 2: np.array([[[[2.0]], [[-1.0]]]], np.float32)}
RPN_DELTAS = {3: np.array([[[[0.1, 0.0, 0.3, -0.2]]]], np.float32),
              2: np.array([[[[0.0, 0.2, 0.0, 0.0]], [[5.0, 5.0, 5.0, 5.0]]]], np.float32)}
GT_DELTAS = np.array([[[0.05, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1]]], np.float32)


def rpn_targets(objectness):
    """RpnTargets over the 3 anchors (deltas zeroed where not fg, as assign_rpn_targets)."""
    objectness = np.asarray([objectness], np.int32)
    deltas = np.where(objectness[..., None] == 1, GT_DELTAS, 0.0).astype(np.float32)
    return RpnTargets(objectness, deltas, np.where(objectness == 1, 0, -1).astype(np.int32))


def test_rpn_losses_hand_computed():
    score, box = rpn_losses(RPN_SCORES, RPN_DELTAS, rpn_targets([1, 0, 1]), samples_per_image=4)
    # anchors in level order: 2.0 (fg), -1.0 (bg), 0.5 (fg); normaliser B * 4 = 4
    np.testing.assert_allclose(score, (bce(2.0, 1) + bce(-1.0, 0) + bce(0.5, 1)) / 4, rtol=1e-6)
    level2 = huber_np([0.0 - 0.05, 0.2, 0.0, 0.0], 1 / 9).sum() / 4  # one fg anchor, 4 coordinates
    level3 = huber_np([0.0, -0.1, 0.2, -0.3], 1 / 9).sum() / 4
    np.testing.assert_allclose(box, level2 + level3, rtol=1e-6)
    assert score.dtype == tf.float32 and box.dtype == tf.float32 and score.shape == ()


def test_rpn_losses_ignore_unsampled_and_default_normaliser():
    score, box = rpn_losses(RPN_SCORES, RPN_DELTAS, rpn_targets([-1, 0, -1]))
    np.testing.assert_allclose(score, bce(-1.0, 0) / 256, rtol=1e-6)
    assert float(box) == 0.0  # no fg anchor


def test_rpn_losses_empty_are_zero_with_finite_gradients():
    scores = {k: tf.Variable(v) for k, v in RPN_SCORES.items()}
    deltas = {k: tf.Variable(v) for k, v in RPN_DELTAS.items()}
    with tf.GradientTape() as tape:
        score, box = rpn_losses(scores, deltas, rpn_targets([-1, -1, -1]))
        total = score + box
    assert float(score) == 0.0 and float(box) == 0.0
    grads = tape.gradient(total, list(scores.values()) + list(deltas.values()))
    assert all(np.isfinite(g.numpy()).all() for g in grads)


# Fast R-CNN: S = 3 slots, C = 3 classes; slot 0 fg class 2, slot 1 bg, slot 2 invalid.
CLASS_LOGITS = np.array([[[0.5, 0.0, 1.0], [2.0, -1.0, 0.0], [9.0, 9.0, 9.0]]], np.float32)
BOX_DELTAS = np.arange(36, dtype=np.float32).reshape(1, 3, 12) / 10.0


def roi_targets(classes, valid):
    """RoiTargets with GT deltas (0.3, 1.0, 0.9, -2.0) on fg slots."""
    classes, valid = np.asarray([classes], np.int32), np.asarray([valid])
    deltas = np.where(classes[..., None] > 0, [0.3, 1.0, 0.9, -2.0], 0.0).astype(np.float32)
    zeros = np.zeros((1, 3, 4), np.float32)
    return RoiTargets(zeros, valid, classes, deltas, zeros, np.where(classes > 0, 0, -1),
                      np.sum(classes > 0, axis=1))


def softmax_ce(logits, label):
    """Softmax cross-entropy of one row."""
    logits = np.asarray(logits, np.float64)
    return np.log(np.exp(logits).sum()) - logits[label]


def test_fast_rcnn_losses_hand_computed():
    targets = roi_targets([2, 0, 0], [True, True, False])
    class_loss, box_loss = fast_rcnn_losses(CLASS_LOGITS, BOX_DELTAS, targets)
    expected_class = (softmax_ce([0.5, 0, 1], 2) + softmax_ce([2, -1, 0], 0)) / 2  # slot 2 invalid
    np.testing.assert_allclose(class_loss, expected_class, rtol=1e-6)
    predicted = BOX_DELTAS[0, 0, 8:12]  # slot 0, class 2 -> (0.8, 0.9, 1.0, 1.1)
    expected = huber_np(predicted - [0.3, 1.0, 0.9, -2.0], 1.0).sum() / 4
    np.testing.assert_allclose(box_loss, expected, rtol=1e-6)


def test_fast_rcnn_losses_empty():
    variables = [tf.Variable(CLASS_LOGITS), tf.Variable(BOX_DELTAS)]
    with tf.GradientTape() as tape:
        class_loss, box_loss = fast_rcnn_losses(*variables, roi_targets([0, 0, 0], [False] * 3))
        total = class_loss + box_loss
    assert float(class_loss) == 0.0 and float(box_loss) == 0.0
    assert all(np.isfinite(g.numpy()).all() for g in tape.gradient(total, variables))
    class_loss, box_loss = fast_rcnn_losses(CLASS_LOGITS, BOX_DELTAS, roi_targets([0, 0, 0], [True] * 3))
    assert float(class_loss) > 0.0 and float(box_loss) == 0.0


# Mask: B = 1, S_fg = 2, R = 2, C = 3 (channels last).
MASK_LOGITS = np.arange(24, dtype=np.float32).reshape(1, 2, 2, 2, 3) / 6.0 - 2.0
MASK_TARGETS = np.array([[[[1, 0], [0, 1]], [[1, 1], [1, 1]]]], np.float32)


def test_mask_loss_hand_computed():
    loss = mask_loss(MASK_LOGITS, MASK_TARGETS, np.array([[1, 0]]), np.array([[True, False]]))
    channel = MASK_LOGITS[0, 0, :, :, 1]  # slot 0's GT class
    expected = np.mean([bce(float(x), float(y)) for x, y in zip(channel.ravel(), MASK_TARGETS[0, 0].ravel())])
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    both = mask_loss(MASK_LOGITS, MASK_TARGETS, np.array([[1, 2]]))  # fg_mask defaults to class > 0
    second = [bce(float(x), 1.0) for x in MASK_LOGITS[0, 1, :, :, 2].ravel()]
    np.testing.assert_allclose(both, (expected * 4 + sum(second)) / 8, rtol=1e-6)


def test_mask_loss_empty():
    logits = tf.Variable(MASK_LOGITS)
    with tf.GradientTape() as tape:
        loss = mask_loss(logits, MASK_TARGETS, np.zeros((1, 2), np.int32), np.zeros((1, 2), bool))
    assert float(loss) == 0.0 and np.isfinite(tape.gradient(loss, logits).numpy()).all()
    assert float(mask_loss(MASK_LOGITS, MASK_TARGETS, np.array([[1, 2]]), np.zeros((1, 2), bool))) == 0.0


@pytest.mark.parametrize("dtype", [tf.float32, tf.float16])
def test_losses_in_tf_function(dtype):
    def cast(tree):
        return tf.nest.map_structure(lambda x: tf.constant(x, dtype), tree)

    @tf.function
    def all_losses(rpn_scores, rpn_deltas, class_logits, box_deltas, mask_logits):
        rpn = rpn_losses(rpn_scores, rpn_deltas, rpn_targets([1, 0, 1]), samples_per_image=4)
        fast = fast_rcnn_losses(class_logits, box_deltas, roi_targets([2, 0, 0], [True, True, False]))
        return rpn + fast + (mask_loss(mask_logits, MASK_TARGETS, np.array([[1, 0]])),)

    graph = all_losses(*cast((RPN_SCORES, RPN_DELTAS, CLASS_LOGITS, BOX_DELTAS, MASK_LOGITS)))
    eager = (rpn_losses(RPN_SCORES, RPN_DELTAS, rpn_targets([1, 0, 1]), samples_per_image=4)
             + fast_rcnn_losses(CLASS_LOGITS, BOX_DELTAS, roi_targets([2, 0, 0], [True, True, False]))
             + (mask_loss(MASK_LOGITS, MASK_TARGETS, np.array([[1, 0]])),))
    for g, e in zip(graph, eager):
        assert g.dtype == tf.float32
        np.testing.assert_allclose(g, e, rtol=1e-2 if dtype == tf.float16 else 1e-6)
