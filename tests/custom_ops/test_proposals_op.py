"""custom_ops/proposals: the fused op against the plain-TF graph of mrcnn_tf2.ops.proposals."""
import numpy as np
import pytest
import tensorflow as tf

from custom_ops.proposals import ops as fused_ops
from mrcnn_tf2.ops import proposals
from mrcnn_tf2.ops.anchors import AnchorGenerator

pytestmark = pytest.mark.skipif(not fused_ops.available(), reason="proposals op library unavailable")

IMAGE_SIZE = (64, 96)
GENERATOR = AnchorGenerator(min_level=2, max_level=4, anchor_scale=2.0)  # 1152 + 288 + 72 anchors
ANCHORS = {k: v.numpy() for k, v in GENERATOR(IMAGE_SIZE).items()}
IMAGE_INFO = np.array([[64, 96, 1, 64, 96], [50, 70, 2, 100, 140], [64, 40, 1, 64, 40]], np.float32)
ARGS = dict(pre_nms_topk=300, post_nms_topk=200, nms_threshold=0.7, min_size=0.0, weights=(1.0, 1.0, 1.0, 1.0))


def rpn_outputs(seed, batch=3, quantize=False, delta_scale=0.4):
    """Random ``({level: logits}, {level: deltas})``; ``quantize`` makes many equal logits."""
    rng = np.random.default_rng(seed)
    scores, deltas = {}, {}
    for level in GENERATOR.levels:
        h, w = GENERATOR.feature_size(IMAGE_SIZE, level)
        a = GENERATOR.anchors_per_location
        logits = rng.normal(0, 2, (batch, h, w, a))
        scores[level] = (np.round(logits) if quantize else logits).astype(np.float32)
        deltas[level] = rng.normal(0, delta_scale, (batch, h, w, 4 * a)).astype(np.float32)
    return scores, deltas


def both(scores, deltas, anchors=None, info=IMAGE_INFO, **overrides):
    """``(fused, plain)`` Proposals for the same inputs."""
    anchors = ANCHORS if anchors is None else anchors
    args = {**ARGS, **overrides}
    fused = proposals.Proposals(*fused_ops.generate_proposals(scores, deltas, anchors, info, **args))
    return fused, proposals.plain_generate_proposals(scores, deltas, anchors, info, **args)


def assert_same(fused, plain):
    """Same valid slots, boxes within 1e-4 px, scores within float rounding."""
    np.testing.assert_array_equal(fused.valid, plain.valid)
    np.testing.assert_allclose(fused.boxes, plain.boxes, atol=1e-4, rtol=1e-6)
    np.testing.assert_allclose(fused.scores, plain.scores, atol=1e-7, rtol=1e-6)
    assert fused.boxes.dtype == tf.float32 and fused.valid.dtype == tf.bool


@pytest.mark.parametrize("seed,overrides", [
    (0, {}),
    (1, dict(pre_nms_topk=50, post_nms_topk=400, nms_threshold=0.5)),  # padding: fewer than P survive
    (2, dict(pre_nms_topk=5000, post_nms_topk=30, nms_threshold=0.3, min_size=4.0)),
    (3, dict(nms_threshold=1.0, weights=(10.0, 10.0, 5.0, 5.0))),
    (4, dict(nms_threshold=0.0)),
])
def test_matches_plain_graph_on_random_inputs(seed, overrides):
    assert_same(*both(*rpn_outputs(seed), **overrides))


def test_ties_follow_top_k_and_nms_order():
    scores, deltas = rpn_outputs(5, quantize=True)
    assert_same(*both(scores, deltas))
    flat = {k: np.zeros_like(v) for k, v in scores.items()}  # every logit equal
    assert_same(*both(flat, deltas, pre_nms_topk=40, post_nms_topk=60))


def test_zero_size_and_outside_image_boxes():
    scores, deltas = rpn_outputs(6)
    anchors = {k: v.copy() for k, v in ANCHORS.items()}
    anchors[2][::3, 2] = anchors[2][::3, 0]  # zero height
    anchors[3][::2] += 200.0  # entirely below/right of every image: clipped to zero size
    deltas[4][..., 2::4] = -30.0  # collapse the boxes of level 4 (exp(-30) * h)
    fused, plain = both(scores, deltas, anchors)
    assert_same(fused, plain)
    boxes = fused.boxes.numpy()[fused.valid.numpy()]
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_nothing_survives_gives_zero_padding():
    fused, plain = both(*rpn_outputs(7), min_size=1e6)
    assert_same(fused, plain)
    assert not fused.valid.numpy().any() and not fused.boxes.numpy().any()


def test_empty_batch_and_empty_level():
    scores, deltas = rpn_outputs(8, batch=0)
    fused, plain = both(scores, deltas, info=IMAGE_INFO[:0])
    assert fused.boxes.shape == (0, ARGS["post_nms_topk"], 4)
    assert_same(fused, plain)
    scores, deltas = rpn_outputs(9)
    scores[4], deltas[4] = scores[4][:, :0], deltas[4][:, :0]
    anchors = {**ANCHORS, 4: ANCHORS[4][:0]}
    out = fused_ops.generate_proposals(scores, deltas, anchors, IMAGE_INFO, **ARGS)
    reference = proposals.plain_generate_proposals({k: scores[k] for k in (2, 3)}, {k: deltas[k] for k in (2, 3)},
                                                   anchors, IMAGE_INFO, **ARGS)
    assert_same(proposals.Proposals(*out), reference)


def test_default_path_uses_op_and_switch_falls_back():
    scores, deltas = rpn_outputs(10)
    fn = lambda fused: proposals.generate_proposals(scores, deltas, ANCHORS, IMAGE_INFO, **ARGS, fused=fused)  # noqa: E731
    uses_op = lambda fused: any(op.type == fused_ops.OP_NAME  # noqa: E731
                                for op in tf.function(lambda: fn(fused), autograph=False).get_concrete_function()
                                .graph.get_operations())
    assert uses_op(True)
    assert not uses_op(False)


def test_half_precision_inputs_and_no_gradient():
    scores, deltas = rpn_outputs(11)
    half = {k: tf.constant(v, tf.float16) for k, v in scores.items()}
    fused, plain = both(half, deltas)
    assert_same(fused, plain)
    variables = {k: tf.Variable(v) for k, v in scores.items()}
    with tf.GradientTape() as tape:
        out = proposals.generate_proposals(variables, deltas, ANCHORS, IMAGE_INFO, **ARGS)
        total = tf.reduce_sum(out.scores) + tf.reduce_sum(out.boxes)
    assert all(g is None for g in tape.gradient(total, list(variables.values())))


@pytest.mark.parametrize("change,message", [
    (lambda s, d, a, i: (s, {**d, 2: d[2][..., :4]}, a, i), "rpn_deltas"),
    (lambda s, d, a, i: (s, d, {**a, 3: a[3][:-1]}, i), "anchors"),
    (lambda s, d, a, i: (s, d, a, i[:2]), "rpn_scores"),
    (lambda s, d, a, i: (s, d, a, i[:, :1]), "image_info"),
])
def test_shape_errors_are_invalid_argument(change, message):
    inputs = change(*rpn_outputs(12), ANCHORS, IMAGE_INFO)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        fused_ops.generate_proposals(*inputs, **ARGS)
