"""mask_targets: RoI == GT box, left half, RoI beyond the box, batching, non-fg zeros."""
import numpy as np
import tensorflow as tf

from mrcnn_tf2.ops.mask_targets import mask_targets

GT_BOXES = np.array([[[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 30.0, 30.0]]], np.float32)


def blocky_mask(seed, blocks=28, size=112):
    """Random binary ``blocks x blocks`` pattern upsampled to ``size`` (exact under resize)."""
    small = np.random.default_rng(seed).uniform(size=(blocks, blocks)) > 0.5
    reps = size // blocks
    return small.astype(np.float32), np.kron(small, np.ones((reps, reps))).astype(np.float32)


def smooth_mask(seed, size=112):
    """Continuous-valued mask in [0, 1] (low-frequency sum of cosines)."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    field = sum(np.cos(rng.uniform(0, 0.15) * y + rng.uniform(0, 0.15) * x + rng.uniform(0, 6))
                for _ in range(4))
    return (0.5 + field / 8).astype(np.float32)


def targets(masks, rois, indices, boxes=GT_BOXES, size=28):
    """``mask_targets`` with numpy in and out."""
    rois, indices = np.asarray(rois, np.float32), np.asarray(indices, np.int32)
    return mask_targets(masks, boxes, rois, indices, size).numpy()


def test_roi_equal_to_gt_box_gives_the_resized_mask():
    small, big = blocky_mask(0)
    masks = np.stack([big, np.zeros_like(big)])[None]
    out = targets(masks, GT_BOXES[:, :1], [[0]])
    assert out.shape == (1, 1, 28, 28) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0], small)


def test_left_half_of_gt_box_gives_left_half_of_mask():
    small, big = blocky_mask(1)
    masks = big[None, None]
    left = np.array([[[10.0, 20.0, 50.0, 60.0]]], np.float32)
    out = targets(masks, left, [[0]], boxes=GT_BOXES[:, :1])
    np.testing.assert_array_equal(out[0, 0], np.repeat(small[:, :14], 2, axis=1))


def test_smooth_mask_matches_half_pixel_resize():
    mask = smooth_mask(2)
    masks = mask[None, None]
    for roi, crop in (([10.0, 20.0, 50.0, 100.0], mask), ([10.0, 20.0, 50.0, 60.0], mask[:, :56])):
        out = targets(masks, [[roi]], [[0]], boxes=GT_BOXES[:, :1])[0, 0]
        resized = tf.image.resize(crop[..., None], [28, 28], method="bilinear").numpy()[..., 0]
        decided = np.abs(resized - 0.5) > 1e-4
        assert 0.2 < out.mean() < 0.8
        np.testing.assert_array_equal(out[decided], (resized >= 0.5)[decided])


def test_roi_beyond_gt_box_is_zero_outside():
    masks = np.ones((1, 1, 112, 112), np.float32)
    wide = [[[10.0, 20.0, 50.0, 180.0]]]  # twice the GT width, extends to the right
    out = targets(masks, wide, [[0]], boxes=GT_BOXES[:, :1])[0, 0]
    assert out[:, :14].all() and not out[:, 14:].any()


def test_batch_indices_and_non_foreground_slots():
    small_a, big_a = blocky_mask(3)
    small_b, big_b = blocky_mask(4)
    masks = np.stack([np.stack([big_a, big_b]), np.stack([big_b, big_a])])  # [2, 2, 112, 112]
    boxes = np.concatenate([GT_BOXES, GT_BOXES[:, ::-1]])  # image 1 has the boxes swapped
    rois = np.stack([boxes[0, [1, 0, 0]], boxes[1, [1, 0, 1]]])  # [2, 3, 4]
    out = targets(masks, rois, [[1, 0, -1], [1, -1, 1]], boxes=boxes)
    np.testing.assert_array_equal(out[0, 0], small_b)
    np.testing.assert_array_equal(out[0, 1], small_a)
    np.testing.assert_array_equal(out[1, 0], small_a)
    assert not out[0, 2].any() and not out[1, 1].any()


def test_no_gt_and_tf_function():
    empty = mask_targets(np.zeros((2, 0, 112, 112), np.float32), np.zeros((2, 0, 4), np.float32),
                         np.ones((2, 5, 4), np.float32), -np.ones((2, 5), np.int32))
    assert empty.shape == (2, 5, 28, 28) and not empty.numpy().any()
    small, big = blocky_mask(5)
    fn = tf.function(lambda m, b, r, i: mask_targets(m, b, r, i))
    out = fn(tf.constant(big[None, None], tf.float16), GT_BOXES[:, :1], GT_BOXES[:, :1], np.array([[0]]))
    np.testing.assert_array_equal(out[0, 0], small)
