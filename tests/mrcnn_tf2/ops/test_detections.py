"""detections: per-class NMS, score threshold, top-K padding, clipping, class-specific decode."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf2.ops import box_ops
from mrcnn_tf2.ops.detections import generate_detections

INFO = np.array([[100, 120, 1, 100, 120]], np.float32)
# A and B overlap (IoU 0.68), C overlaps A (IoU 0.95) and B (IoU 0.65).
ROIS = np.array([[[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10.5]]], np.float32)
# Far apart: nothing overlaps.
FAR_ROIS = np.array([[[0, 0, 10, 10], [51, 51, 61, 61], [0, 30, 10, 40.5]]], np.float32)
PROBS = np.array([[[0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.3, 0.6, 0.1]]], np.float32)
ZERO_DELTAS = np.zeros((1, 3, 12), np.float32)


def detect(rois=ROIS, deltas=ZERO_DELTAS, probs=PROBS, info=INFO, **kwargs):
    """``generate_detections`` on probabilities (logits = log p), numpy outputs."""
    out = generate_detections(np.log(probs), deltas, rois, info, **kwargs)
    return {k: v.numpy() for k, v in out.items()}


def test_same_class_suppressed_other_class_kept():
    out = detect(max_detections=4)
    assert out["num_detections"].tolist() == [2]
    np.testing.assert_allclose(out["detection_boxes"][0, :2], ROIS[0, :2])  # A class 1, B class 2
    np.testing.assert_array_equal(out["detection_classes"][0], [1, 2, 0, 0])
    np.testing.assert_allclose(out["detection_scores"][0], [0.8, 0.7, 0, 0], atol=1e-6)
    assert not out["detection_boxes"][0, 2:].any()
    assert out["detection_classes"].dtype == np.int32 and out["num_detections"].dtype == np.int32
    assert out["detection_boxes"].dtype == np.float32 and out["detection_scores"].dtype == np.float32


def test_score_threshold_is_strict_and_applies_to_all_classes():
    far = detect(rois=FAR_ROIS, max_detections=10)
    assert far["num_detections"].tolist() == [6]  # every fg (RoI, class) pair scores >= 0.1
    far = detect(rois=FAR_ROIS, max_detections=10, score_threshold=0.15)
    np.testing.assert_allclose(far["detection_scores"][0, :4], [0.8, 0.7, 0.6, 0], atol=1e-6)
    np.testing.assert_array_equal(far["detection_classes"][0, :4], [1, 2, 1, 0])
    assert detect(score_threshold=0.75)["num_detections"].tolist() == [1]
    assert detect(score_threshold=0.8 + 1e-6)["num_detections"].tolist() == [0]


def test_max_detections_keeps_the_best():
    out = detect(rois=FAR_ROIS, max_detections=2)
    assert out["detection_boxes"].shape == (1, 2, 4) and out["num_detections"].tolist() == [2]
    np.testing.assert_allclose(out["detection_scores"][0], [0.8, 0.7], atol=1e-6)
    empty = detect(score_threshold=0.9, max_detections=3)
    assert empty["num_detections"].tolist() == [0]
    assert not empty["detection_boxes"].any() and not empty["detection_classes"].any()


def test_boxes_are_decoded_per_class_and_clipped():
    deltas = np.zeros((1, 3, 3, 4), np.float32)
    deltas[0, :, 1] = [1.0, 2.0, 0.0, 0.0]   # class 1: shift by (0.1 h, 0.2 w)
    deltas[0, :, 2] = [-1.0, 0.0, 1.0, 1.0]  # class 2: shift up and grow
    out = detect(rois=FAR_ROIS, deltas=deltas.reshape(1, 3, 12), score_threshold=0.15)
    expected = box_ops.decode_boxes(deltas[0, [0, 1, 2], [1, 2, 1]], FAR_ROIS[0]).numpy()
    np.testing.assert_allclose(out["detection_boxes"][0, :3], expected, atol=1e-5)
    big = np.array([[[-5.0, -5.0, 20.0, 30.0]] * 3], np.float32)
    small_image = np.array([[16, 24, 1, 16, 24]], np.float32)
    out = detect(rois=big, info=small_image, max_detections=1)
    np.testing.assert_allclose(out["detection_boxes"][0, 0], [0, 0, 16, 24])


def test_invalid_rois_and_per_class_topk():
    out = detect(rois_valid=np.array([[False, True, True]]))
    np.testing.assert_allclose(out["detection_scores"][0, :3], [0.7, 0.6, 0], atol=1e-6)
    np.testing.assert_array_equal(out["detection_classes"][0, :3], [2, 1, 0])
    out = detect(rois=FAR_ROIS, pre_nms_topk_per_class=1)  # only the best RoI of each class
    np.testing.assert_allclose(out["detection_scores"][0, :3], [0.8, 0.7, 0], atol=1e-6)


def greedy_nms(boxes, scores, threshold):
    """Kept indices of textbook greedy NMS."""
    iou = box_ops.iou(boxes, boxes).numpy()
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if all(iou[i, j] <= threshold for j in keep):
            keep.append(i)
    return keep


def reference(probs, deltas, rois, info, k, nms_threshold, score_threshold, pre):
    """One image: per-class top-pre/clip/decode/threshold/greedy NMS, merged and sorted."""
    found = []
    for c in range(1, probs.shape[-1]):
        boxes = box_ops.decode_boxes(deltas[:, c], rois).numpy()
        boxes = np.clip(boxes, 0, [info[0], info[1], info[0], info[1]])
        top = np.argsort(-probs[:, c], kind="stable")[:pre]
        cand = top[probs[top, c] > score_threshold]
        kept = cand[greedy_nms(boxes[cand], probs[cand, c], nms_threshold)]
        found += [(probs[i, c], c, boxes[i]) for i in kept]
    return sorted(found, key=lambda item: -item[0])[:k]


@pytest.mark.parametrize("seed,pre", [(0, 1000), (1, 1000), (2, 8)])
def test_matches_brute_force_reference(seed, pre):
    rng = np.random.default_rng(seed)
    batch, rois_per_image, classes, k = 2, 40, 4, 15
    corner = rng.uniform(0, 50, (batch, rois_per_image, 2))
    rois = np.concatenate([corner, corner + rng.uniform(5, 30, corner.shape)], -1).astype(np.float32)
    logits = rng.normal(0, 2, (batch, rois_per_image, classes)).astype(np.float32)
    deltas = rng.normal(0, 1, (batch, rois_per_image, classes, 4)).astype(np.float32)
    info = np.array([[60, 70, 1, 60, 70], [50, 55, 1, 50, 55]], np.float32)
    out = generate_detections(logits, deltas.reshape(batch, rois_per_image, -1), rois, info,
                              max_detections=k, nms_threshold=0.4, score_threshold=0.1,
                              pre_nms_topk_per_class=pre)
    probs = tf.nn.softmax(logits).numpy()
    for b in range(batch):
        ref = reference(probs[b], deltas[b], rois[b], info[b], k, 0.4, 0.1, pre)
        n = len(ref)
        assert int(out["num_detections"][b]) == n and n > 5
        np.testing.assert_allclose(out["detection_scores"][b, :n], [s for s, _, _ in ref], rtol=1e-5)
        np.testing.assert_array_equal(out["detection_classes"][b, :n], [c for _, c, _ in ref])
        np.testing.assert_allclose(out["detection_boxes"][b, :n], [x for _, _, x in ref], atol=1e-4)


def test_tf_function_and_half_precision():
    fn = tf.function(lambda l, d, r: generate_detections(l, d, r, INFO, max_detections=4))
    graph = fn(tf.constant(np.log(PROBS), tf.float16), tf.constant(ZERO_DELTAS, tf.float16), ROIS)
    eager = detect(max_detections=4)
    assert graph["detection_boxes"].dtype == tf.float32
    for key, value in eager.items():
        np.testing.assert_allclose(graph[key], value, atol=1e-3)


@pytest.mark.parametrize("seed,pre,k", [(0, 1000, 15), (3, 8, 15), (4, 1000, 3)])
def test_shared_box_nms_export_graph_equals_the_combined_call(seed, pre, k):
    """The ONNX-friendly NMS (one class per NMS "image", then a top-k merge) finds the same detections."""
    from mrcnn_tf2.ops.export_graph import onnx_friendly

    rng = np.random.default_rng(seed)
    batch, rois_per_image, classes = 2, 40, 5
    corner = rng.uniform(0, 50, (batch, rois_per_image, 2))
    rois = np.concatenate([corner, corner + rng.uniform(5, 30, corner.shape)], -1).astype(np.float32)
    logits = rng.normal(0, 2, (batch, rois_per_image, classes)).astype(np.float32)
    deltas = rng.normal(0, 1, (batch, rois_per_image, classes * 4)).astype(np.float32)
    info = np.array([[60, 70, 1, 60, 70], [50, 55, 1, 50, 55]], np.float32)
    valid = rng.uniform(size=(batch, rois_per_image)) > 0.2
    args = dict(rois_valid=valid, max_detections=k, nms_threshold=0.4, score_threshold=0.05, pre_nms_topk_per_class=pre)
    want = generate_detections(logits, deltas, rois, info, **args)
    with onnx_friendly():
        got = tf.function(lambda *a: generate_detections(*a, **args))(logits, deltas, rois, info)
    assert int(want["num_detections"].numpy().min()) >= min(k, 3)
    for key in ("num_detections", "detection_classes"):
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
    for key in ("detection_boxes", "detection_scores"):  # graph vs eager decode: float rounding only
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-5, err_msg=key)
