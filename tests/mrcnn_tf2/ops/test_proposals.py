"""proposals: against a numpy brute-force reference (decode, clip, top-k, greedy NMS, merge)."""
import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf2.ops.anchors import AnchorGenerator
from mrcnn_tf2.ops.proposals import Proposals, generate_proposals

IMAGE_SIZE = (32, 48)
GENERATOR = AnchorGenerator(min_level=3, max_level=4, anchor_scale=2.0)  # 72 + 18 anchors
ANCHORS = GENERATOR(IMAGE_SIZE)
IMAGE_INFO = np.array([[32, 48, 1, 32, 48], [28, 40, 2, 56, 80]], np.float32)


def rpn_outputs(seed, batch=2):
    """Random ``({level: logits}, {level: deltas})`` for the tiny 2-level pyramid."""
    rng = np.random.default_rng(seed)
    scores, deltas = {}, {}
    for level in GENERATOR.levels:
        h, w = GENERATOR.feature_size(IMAGE_SIZE, level)
        a = GENERATOR.anchors_per_location
        scores[level] = rng.normal(0, 2, (batch, h, w, a)).astype(np.float32)
        deltas[level] = rng.normal(0, 0.4, (batch, h, w, 4 * a)).astype(np.float32)
    return scores, deltas


def decode_np(deltas, anchors):
    """Faster R-CNN decode with weights (1, 1, 1, 1), float64."""
    h, w = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    yc, xc = anchors[:, 0] + h / 2 + deltas[:, 0] * h, anchors[:, 1] + w / 2 + deltas[:, 1] * w
    half_h = np.exp(np.minimum(deltas[:, 2], math.log(1000 / 16))) * h / 2
    half_w = np.exp(np.minimum(deltas[:, 3], math.log(1000 / 16))) * w / 2
    return np.stack([yc - half_h, xc - half_w, yc + half_h, xc + half_w], axis=1)


def iou_np(a, b):
    """IoU of two boxes."""
    ih = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    iw = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ih * iw
    return ih * iw / union


def greedy_nms(boxes, scores, threshold, limit):
    """Indices kept by textbook greedy NMS (boxes visited by descending score)."""
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if len(keep) < limit and all(iou_np(boxes[i], boxes[j]) <= threshold for j in keep):
            keep.append(i)
    return keep


def reference_image(scores, deltas, info, pre, post, threshold, min_size):
    """One image: ``(boxes [n, 4], logits [n])`` sorted by logit, ``n <= post``."""
    found = []
    for level in sorted(scores):
        logits, level_deltas = scores[level].reshape(-1), deltas[level].reshape(-1, 4)
        anchors = ANCHORS[level].numpy().astype(np.float64)
        top = np.argsort(-logits, kind="stable")[:min(pre, len(logits))]
        boxes = decode_np(level_deltas[top].astype(np.float64), anchors[top])
        boxes = np.clip(boxes, 0, [info[0], info[1], info[0], info[1]])
        ok = np.flatnonzero((boxes[:, 2] - boxes[:, 0] > min_size) & (boxes[:, 3] - boxes[:, 1] > min_size))
        keep = greedy_nms(boxes[ok], logits[top][ok], threshold, min(post, len(top)))
        found += [(logits[top][ok][i], boxes[ok][i]) for i in keep]
    found = sorted(found, key=lambda item: -item[0])[:post]
    return np.array([b for _, b in found]).reshape(-1, 4), np.array([s for s, _ in found])


def check_against_reference(result, scores, deltas, pre, post, threshold, min_size):
    """Asserts a batched result equals the per-image reference (values and padding)."""
    for b in range(len(IMAGE_INFO)):
        boxes, logits = reference_image({k: v[b] for k, v in scores.items()},
                                        {k: v[b] for k, v in deltas.items()},
                                        IMAGE_INFO[b], pre, post, threshold, min_size)
        n = len(logits)
        np.testing.assert_array_equal(result.valid[b], np.arange(post) < n)
        np.testing.assert_allclose(result.boxes[b, :n], boxes, atol=1e-4)
        np.testing.assert_allclose(result.scores[b, :n], 1 / (1 + np.exp(-logits)), rtol=1e-5)
        assert not result.boxes.numpy()[b, n:].any() and not result.scores.numpy()[b, n:].any()


@pytest.mark.parametrize("pre,post,threshold", [(20, 25, 0.5), (1000, 40, 0.7), (5, 3, 0.3)])
def test_matches_brute_force_reference(pre, post, threshold):
    scores, deltas = rpn_outputs(0)
    result = generate_proposals(scores, deltas, ANCHORS, IMAGE_INFO, pre_nms_topk=pre,
                                post_nms_topk=post, nms_threshold=threshold)
    assert isinstance(result, Proposals) and result.boxes.shape == (2, post, 4)
    assert result.boxes.dtype == tf.float32 and result.valid.dtype == tf.bool
    check_against_reference(result, scores, deltas, pre, post, threshold, 0.0)


def test_padding_when_fewer_proposals_than_slots():
    scores, deltas = rpn_outputs(1)
    result = generate_proposals(scores, deltas, ANCHORS, IMAGE_INFO, pre_nms_topk=10,
                                post_nms_topk=64, nms_threshold=0.5)
    counts = result.valid.numpy().sum(axis=1)
    assert (counts <= 20).all() and (counts > 0).all()  # at most 10 per level survive
    check_against_reference(result, scores, deltas, 10, 64, 0.5, 0.0)
    assert (np.diff(result.scores.numpy(), axis=1) <= 0).all()


def test_min_size_drops_small_boxes():
    scores, deltas = rpn_outputs(2)
    result = generate_proposals(scores, deltas, ANCHORS, IMAGE_INFO, pre_nms_topk=50,
                                post_nms_topk=30, nms_threshold=0.6, min_size=8.0)
    boxes = result.boxes.numpy()[result.valid.numpy()]
    assert (boxes[:, 2] - boxes[:, 0] > 8).all() and (boxes[:, 3] - boxes[:, 1] > 8).all()
    check_against_reference(result, scores, deltas, 50, 30, 0.6, 8.0)


def test_boxes_are_clipped_per_image():
    scores, deltas = rpn_outputs(3)
    deltas = {k: v * 0 + np.float32(1.5) for k, v in deltas.items()}  # grow every box
    result = generate_proposals(scores, deltas, ANCHORS, IMAGE_INFO, post_nms_topk=10)
    for b, (h, w) in enumerate(IMAGE_INFO[:, :2]):
        boxes = result.boxes.numpy()[b][result.valid.numpy()[b]]
        assert boxes.min() >= 0 and (boxes[:, 2] <= h).all() and (boxes[:, 3] <= w).all()


def test_tf_function_half_precision_and_no_gradient():
    scores, deltas = rpn_outputs(4)
    half = {k: tf.constant(v, tf.float16) for k, v in scores.items()}
    fn = tf.function(lambda s, d: generate_proposals(s, d, ANCHORS, IMAGE_INFO, pre_nms_topk=20,
                                                     post_nms_topk=25, nms_threshold=0.5))
    graph = fn(scores, deltas)
    eager = generate_proposals(scores, deltas, ANCHORS, IMAGE_INFO, pre_nms_topk=20,
                               post_nms_topk=25, nms_threshold=0.5)
    for a, b in zip(graph, eager):
        np.testing.assert_array_equal(a, b)
    assert fn(half, deltas).boxes.dtype == tf.float32
    variables = {k: tf.Variable(v) for k, v in scores.items()}
    with tf.GradientTape() as tape:
        out = generate_proposals(variables, deltas, ANCHORS, IMAGE_INFO, post_nms_topk=5)
        total = tf.reduce_sum(out.scores) + tf.reduce_sum(out.boxes)
    assert all(g is None for g in tape.gradient(total, list(variables.values())))
