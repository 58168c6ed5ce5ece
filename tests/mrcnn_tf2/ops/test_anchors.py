"""anchors: golden counts, sizes, ratios, centres and order for a 256x256 image."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf2.ops.anchors import AnchorGenerator, concat_levels

IMAGE = (256, 256)
COUNTS_256 = {2: 64 * 64 * 3, 3: 32 * 32 * 3, 4: 16 * 16 * 3, 5: 8 * 8 * 3, 6: 4 * 4 * 3}


@pytest.fixture(scope="module")
def generator():
    return AnchorGenerator()


def sizes(boxes):
    """[N, 4] -> [N, 2] (height, width)."""
    return np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)


def test_counts_per_level(generator):
    anchors = generator(IMAGE)
    assert generator.anchors_per_location == 3
    assert {level: a.shape[0] for level, a in anchors.items()} == COUNTS_256
    assert generator.level_counts(IMAGE) == COUNTS_256
    assert generator.concatenated(IMAGE).shape == (16368, 4)
    assert all(a.dtype == tf.float32 for a in anchors.values())


@pytest.mark.parametrize("level", [2, 3, 4, 5, 6])
def test_sizes_and_ratios(generator, level):
    side = 8.0 * 2 ** level  # 32, 64, 128, 256, 512
    expected = np.array([[side, side], [0.7 * side, 1.4 * side], [1.4 * side, 0.7 * side]])  # (h, w)
    got = sizes(generator(IMAGE)[level].numpy())
    np.testing.assert_allclose(got[:3], expected, rtol=1e-6)
    np.testing.assert_allclose(got, np.tile(expected, (len(got) // 3, 1)), rtol=1e-6)


def test_first_anchors_golden(generator):
    np.testing.assert_allclose(generator(IMAGE)[2][:3], [[-14.0, -14.0, 18.0, 18.0],
                                                         [-9.2, -20.4, 13.2, 24.4],
                                                         [-20.4, -9.2, 24.4, 13.2]], atol=1e-5)
    np.testing.assert_allclose(generator(IMAGE)[6][-1], [224 - 358.4, 224 - 179.2, 224 + 358.4, 224 + 179.2],
                               atol=1e-4)


def test_centres_follow_y_x_a_order(generator):
    level, stride, cols = 3, 8, 32
    boxes = generator(IMAGE)[level].numpy().reshape(32, cols, 3, 4)
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # [H, W, A, 2] (yc, xc)
    ys, xs = np.meshgrid(np.arange(32), np.arange(cols), indexing="ij")
    np.testing.assert_allclose(centres[..., 0], np.repeat((stride * (ys + 0.5))[..., None], 3, -1))
    np.testing.assert_allclose(centres[..., 1], np.repeat((stride * (xs + 0.5))[..., None], 3, -1))


def test_non_divisible_image_uses_ceil():
    generator = AnchorGenerator()
    assert generator.feature_size((100, 70), 6) == (2, 2)
    assert generator((100, 70))[2].shape[0] == 25 * 18 * 3


def test_octave_scales():
    generator = AnchorGenerator(num_scales=2, aspect_ratios=((1.0, 1.0),))
    np.testing.assert_allclose(generator.anchor_sizes(2), [[32, 32], [32 * 2 ** 0.5, 32 * 2 ** 0.5]])


def test_split_levels_inverts_concat(generator):
    values = tf.reshape(tf.range(2 * 16368), [2, 16368])
    parts = generator.split_levels(values, IMAGE, axis=1)
    assert {level: p.shape[1] for level, p in parts.items()} == COUNTS_256
    np.testing.assert_array_equal(concat_levels(parts, axis=1), values)


@pytest.mark.parametrize("kwargs", [dict(min_level=3, max_level=2), dict(num_scales=0),
                                    dict(aspect_ratios=((1.0,),)), dict(anchor_scale=-1.0)])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        AnchorGenerator(**kwargs)
