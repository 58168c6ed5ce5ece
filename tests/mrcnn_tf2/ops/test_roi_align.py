"""roi_align: level assignment goldens, linear-map goldens, numpy (detectron2) reference."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf2.ops.roi_align import assign_levels, multilevel_roi_align, roi_align


def bilinear(fmap, y, x):
    """detectron2's ROIAlign bilinear_interpolate on [H, W, C]: clamp in [-1, H], else 0."""
    height, width = fmap.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(fmap.shape[-1])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * fmap[y0, x0] + (1 - ly) * lx * fmap[y0, x1]
            + ly * (1 - lx) * fmap[y1, x0] + ly * lx * fmap[y1, x1])


def roi_align_ref(fmap, box, size, scale, ratio, aligned):
    """One box of detectron2's ROIAlign forward, in float64 loops: [size, size, C]."""
    offset = 0.5 if aligned else 0.0
    y_start, x_start = box[0] * scale - offset, box[1] * scale - offset
    h, w = (box[2] - box[0]) * scale, (box[3] - box[1]) * scale
    if not aligned:
        h, w = max(h, 1.0), max(w, 1.0)
    bin_h, bin_w = h / size, w / size
    out = np.zeros((size, size, fmap.shape[-1]))
    for i in range(size):
        for j in range(size):
            for iy in range(ratio):
                for ix in range(ratio):
                    y = y_start + i * bin_h + (iy + 0.5) * bin_h / ratio
                    x = x_start + j * bin_w + (ix + 0.5) * bin_w / ratio
                    out[i, j] += bilinear(fmap, y, x)
    return out / ratio ** 2


def test_level_assignment_golden():
    sides = [(0.0, 0.0), (56.0, 56.0), (111.9, 112.0), (112.0, 112.0), (223.9, 224.0),
             (224.0, 224.0), (447.0, 448.0), (448.0, 448.0), (1000.0, 1000.0), (100.0, 501.0)]
    boxes = tf.constant([[5.0, 5.0, 5.0 + h, 5.0 + w] for h, w in sides])
    np.testing.assert_array_equal(assign_levels(boxes), [2, 2, 2, 3, 3, 4, 4, 5, 5, 3])
    np.testing.assert_array_equal(assign_levels(boxes, min_level=3, max_level=6), [3, 3, 3, 3, 3, 4, 4, 5, 6, 3])


def test_level_assignment_matches_log_formula():
    rng = np.random.default_rng(0)
    hw = rng.uniform(1, 900, (500, 2))
    boxes = np.concatenate([np.zeros_like(hw), hw], axis=1).astype(np.float32)
    formula = np.clip(np.floor(4 + np.log2(np.sqrt(hw[:, 0] * hw[:, 1]) / 224)), 2, 5)
    np.testing.assert_array_equal(assign_levels(boxes), formula)


@pytest.mark.parametrize("aligned", [True, False])
def test_linear_feature_map_golden(aligned):
    """On f(y, x) = 10 y + x bilinear sampling is exact: each bin holds f at its centre."""
    ys, xs = np.meshgrid(np.arange(16.0), np.arange(16.0), indexing="ij")
    fmap = (10 * ys + xs)[None, :, :, None].astype(np.float32)
    box = np.array([[8.0, 12.0, 40.0, 36.0]], np.float32)  # stride 4 -> cells [2, 10) x [3, 9)
    out = roi_align(fmap, box, [0], output_size=4, spatial_scale=0.25, aligned=aligned).numpy()[0, ..., 0]
    offset = 0.5 if aligned else 0.0
    centre_y = 2.0 - offset + (np.arange(4) + 0.5) * 2.0
    centre_x = 3.0 - offset + (np.arange(4) + 0.5) * 1.5
    np.testing.assert_allclose(out, 10 * centre_y[:, None] + centre_x[None, :], atol=1e-4)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_matches_detectron2_reference(aligned, ratio):
    rng = np.random.default_rng(ratio)
    fmap = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
    boxes = np.array([[4.0, 6.0, 30.0, 38.0],     # inside
                      [-10.0, -6.0, 14.0, 20.0],  # over the top-left border
                      [20.0, 30.0, 44.0, 52.0],   # over the bottom-right border (image 36 x 44)
                      [12.0, 12.0, 13.0, 13.5],   # smaller than one cell
                      [-40.0, -40.0, -20.0, -8.0]], np.float32)  # fully outside
    indices = np.array([0, 1, 0, 1, 0], np.int32)
    got = roi_align(fmap, boxes, indices, output_size=3, spatial_scale=0.25, sampling_ratio=ratio,
                    aligned=aligned).numpy()
    for k, (box, image) in enumerate(zip(boxes, indices)):
        np.testing.assert_allclose(got[k], roi_align_ref(fmap[image], box, 3, 0.25, ratio, aligned), atol=1e-4)


def test_sampling_ratio_one_unaligned_is_the_seed_rule():
    """The seed samples each bin once at y1/s + (i + 0.5) h / (s R), bilinear, no offset."""
    rng = np.random.default_rng(5)
    fmap = rng.normal(size=(1, 12, 12, 2)).astype(np.float32)
    box = np.array([10.0, 6.0, 30.0, 40.0], np.float32)
    got = roi_align(fmap, box[None], [0], 5, 0.25, sampling_ratio=1, aligned=False).numpy()[0]
    ys = box[0] / 4 + (np.arange(5) + 0.5) * (box[2] - box[0]) / 20
    xs = box[1] / 4 + (np.arange(5) + 0.5) * (box[3] - box[1]) / 20
    expected = np.array([[bilinear(fmap[0], y, x) for x in xs] for y in ys])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_multilevel_picks_each_box_level():
    rng = np.random.default_rng(7)
    image = 256
    features = {level: rng.normal(size=(2, image // 2 ** level, image // 2 ** level, 2)).astype(np.float32)
                for level in range(2, 7)}
    boxes = np.array([[[10, 10, 40, 50], [0, 0, 120, 130], [30, 20, 250, 240], [5, 5, 5, 5]],
                      [[100, 100, 130, 160], [0, 0, 256, 256], [60, 70, 90, 250], [1, 2, 3, 4]]], np.float32)
    got = multilevel_roi_align(features, boxes, output_size=2, sampling_ratio=2).numpy()
    assert got.shape == (2, 4, 2, 2, 2)
    levels = assign_levels(boxes).numpy()
    for b in range(2):
        for n in range(4):
            level = levels[b, n]
            ref = roi_align_ref(features[level][b], boxes[b, n], 2, 2.0 ** -level, 2, True)
            np.testing.assert_allclose(got[b, n], ref, atol=1e-4)


def test_multilevel_empty_boxes_dtype_and_gradient():
    features = {level: tf.ones([1, 64 // 2 ** level, 64 // 2 ** level, 4], tf.float16) for level in range(2, 6)}
    assert multilevel_roi_align(features, tf.zeros([1, 0, 4])).shape == (1, 0, 7, 7, 4)
    out = multilevel_roi_align(features, tf.constant([[[8.0, 8.0, 40.0, 40.0]]]))
    assert out.dtype == tf.float16 and out.shape == (1, 1, 7, 7, 4)
    np.testing.assert_allclose(out.numpy().astype(np.float32), 1.0, atol=1e-3)
    feature = tf.Variable(tf.random.normal([1, 16, 16, 4]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(multilevel_roi_align({2: feature, 3: feature[:, :8, :8], 4: feature[:, :4, :4],
                                                   5: feature[:, :2, :2]}, tf.constant([[[8.0, 8.0, 40.0, 40.0]]])))
    grad = tape.gradient(loss, feature).numpy()
    assert np.isfinite(grad).all() and grad.sum() == pytest.approx(7 * 7 * 4, rel=1e-4)


def test_missing_level_is_an_error():
    with pytest.raises(ValueError, match="lacks levels"):
        multilevel_roi_align({2: tf.zeros([1, 4, 4, 1])}, tf.zeros([1, 1, 4]))


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("ratio", [1, 2])
def test_gather_form_of_the_export_graph_equals_crop_and_resize(aligned, ratio):
    """``gather_roi_align`` (ONNX export graphs) samples the same points with the same border rule,
    boxes inside, across and beyond the border and smaller than a cell included."""
    from mrcnn_tf2.ops.roi_align import gather_roi_align

    rng = np.random.default_rng(ratio + 2 * aligned)
    features = rng.normal(size=(2, 9, 11, 5)).astype(np.float32)
    corner = rng.uniform(-12, 40, (30, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.1, 30, (30, 2))], -1).astype(np.float32)
    boxes[0] = [-20, -20, -8, -8]  # entirely outside: zeros
    indices = rng.integers(0, 2, 30).astype(np.int32)
    want = roi_align(features, boxes, indices, 7, 0.25, ratio, aligned).numpy()
    got = gather_roi_align(features, boxes, indices, 7, 0.25, ratio, aligned).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not want[0].any()


def test_multilevel_takes_the_gather_form_inside_the_export_switch():
    from mrcnn_tf2.ops.export_graph import onnx_friendly
    from mrcnn_tf2.ops.roi_align import plain_multilevel_roi_align

    rng = np.random.default_rng(0)
    features = {level: rng.normal(size=(1, 64 // 2 ** level, 64 // 2 ** level, 3)).astype(np.float32)
                for level in range(2, 6)}
    corner = rng.uniform(0, 40, (1, 12, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(2, 60, (1, 12, 2))], -1).astype(np.float32)
    want = plain_multilevel_roi_align(features, boxes, 7).numpy()
    with onnx_friendly():
        got = tf.function(lambda b: plain_multilevel_roi_align(features, b, 7))(boxes).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_feature_gradient_of_overlapping_boxes_loses_nothing():
    """TF's CPU CropAndResizeGradImage ``+=``s from several threads without atomics: 3000 boxes on one
    map lost ~4 % of their gradient (a different amount each run). roi_align's gradient must keep it all."""
    from mrcnn_tf2.ops.roi_align import crop_and_resize

    rng = np.random.default_rng(0)
    image = tf.constant(rng.normal(size=(1, 20, 20, 64)).astype(np.float32))
    boxes = tf.constant(np.tile([[0.1, 0.1, 0.9, 0.9]], (3000, 1)).astype(np.float32))  # all samples inside
    indices = tf.zeros([3000], tf.int32)
    grads = []
    for _ in range(3):
        with tf.GradientTape() as tape:
            tape.watch(image)
            loss = tf.reduce_sum(crop_and_resize(image, boxes, indices, 14))
        grads.append(tape.gradient(loss, image).numpy())
    # Each sample's four bilinear weights sum to 1: the gradient sums to one per sample and channel.
    assert grads[0].sum(dtype=np.float64) == pytest.approx(3000 * 14 * 14 * 64, rel=1e-5)
    np.testing.assert_array_equal(grads[1], grads[0])
    np.testing.assert_array_equal(grads[2], grads[0])


@pytest.mark.parametrize("num", [1, 5])
def test_crop_and_resize_gradient_matches_tf_serial_gradient(num):
    """Weights and border rule of the race-free gradient = TF's own kernel (run on one box at a time)."""
    from mrcnn_tf2.ops.roi_align import crop_and_resize

    rng = np.random.default_rng(num)
    image = tf.constant(rng.normal(size=(2, 9, 11, 3)).astype(np.float32))
    boxes = tf.constant(rng.uniform(-0.3, 1.3, (12, 4)).astype(np.float32))  # some samples outside
    indices = tf.constant(rng.integers(0, 2, 12).astype(np.int32))
    weights = tf.constant(rng.normal(size=(12, num, num, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch([image, boxes])
        loss = tf.reduce_sum(crop_and_resize(image, boxes, indices, num) * weights)
    got_image, got_boxes = tape.gradient(loss, [image, boxes])
    want = sum(tf.raw_ops.CropAndResizeGradImage(grads=weights[k:k + 1], boxes=boxes[k:k + 1],
                                                 box_ind=indices[k:k + 1], image_size=tf.shape(image),
                                                 T=tf.float32) for k in range(12))
    np.testing.assert_allclose(got_image.numpy(), want.numpy(), atol=1e-5)
    want_boxes = tf.raw_ops.CropAndResizeGradBoxes(grads=weights, image=image, boxes=boxes, box_ind=indices)
    np.testing.assert_allclose(got_boxes.numpy(), want_boxes.numpy(), atol=1e-5)
