"""Tests for efficientnet_tf2.autoaugment: op contracts, golden values, policies."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from efficientnet_tf2 import autoaugment as aa

# A representative argument per op (None: the op takes no argument).
OP_ARGUMENTS = {
    "ShearX": 0.2, "ShearY": -0.2, "TranslateX": 7.0, "TranslateY": -5.0,
    "Rotate": 25.0, "AutoContrast": None, "Equalize": None, "Invert": None,
    "Solarize": 100, "SolarizeAdd": 40, "Posterize": 3, "Color": 1.6,
    "Contrast": 0.4, "Brightness": 1.3, "Sharpness": 0.2,
}
ENHANCE = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
           "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}


def run(name, image, argument=None):
    """Applies OPS[name] to a numpy image; returns numpy."""
    args = () if argument is None else (argument,)
    return aa.OPS[name](tf.constant(image), *args).numpy()


def test_every_op_has_an_argument_case():
    assert set(OP_ARGUMENTS) == set(aa.OPS)


@pytest.mark.parametrize("name", sorted(OP_ARGUMENTS))
def test_op_keeps_shape_and_dtype_eager_and_graph(name, rgb_image):
    argument = OP_ARGUMENTS[name]
    args = () if argument is None else (tf.constant(argument),)
    eager = aa.OPS[name](tf.constant(rgb_image), *args)
    graph = tf.function(aa.OPS[name])(tf.constant(rgb_image), *args)
    for out in (eager, graph):
        assert out.shape == rgb_image.shape and out.dtype == tf.uint8
    np.testing.assert_array_equal(eager.numpy(), graph.numpy())


def test_invert_and_solarize_golden_values():
    pixels = np.array([[[0, 127, 128], [200, 255, 1]]], np.uint8)
    np.testing.assert_array_equal(run("Invert", pixels), 255 - pixels)
    assert run("Invert", np.zeros([1, 1, 3], np.uint8))[0, 0, 0] == 255
    np.testing.assert_array_equal(run("Solarize", pixels, 128),
                                  [[[0, 127, 127], [55, 0, 1]]])
    np.testing.assert_array_equal(run("Solarize", pixels, 256), pixels)
    np.testing.assert_array_equal(run("SolarizeAdd", pixels, 100),
                                  [[[100, 227, 128], [200, 255, 101]]])


def test_posterize_keeps_top_bits():
    pixels = np.full([2, 2, 3], 0b10110111, np.uint8)
    assert run("Posterize", pixels, 4)[0, 0, 0] == 0b10110000
    assert run("Posterize", pixels, 1)[0, 0, 0] == 0b10000000
    np.testing.assert_array_equal(run("Posterize", pixels, 8), pixels)
    np.testing.assert_array_equal(run("Posterize", pixels, 0), 0)


@pytest.mark.parametrize("name,identity", [
    ("Color", 1.0), ("Contrast", 1.0), ("Brightness", 1.0), ("Sharpness", 1.0),
    ("ShearX", 0.0), ("ShearY", 0.0), ("TranslateX", 0.0), ("TranslateY", 0.0),
    ("Rotate", 0.0), ("Posterize", 8), ("Solarize", 256), ("SolarizeAdd", 0)])
def test_identity_magnitudes(name, identity, rgb_image):
    np.testing.assert_array_equal(run(name, rgb_image, identity), rgb_image)


@pytest.mark.parametrize("name", ["Color", "Contrast", "Brightness", "Sharpness",
                                  "ShearX", "Rotate", "TranslateY"])
def test_paper_magnitude_zero_is_identity(name, rgb_image):
    _, argument_fn = aa.POLICIES["imagenet"]
    out = aa.apply_op(tf.constant(rgb_image), name, 0, tf.constant(-1.0), argument_fn)
    np.testing.assert_array_equal(out.numpy(), rgb_image)


def test_paper_arguments_match_torchvision_bins(rgb_image):
    _, argument_fn = aa.POLICIES["imagenet"]
    image, sign = tf.constant(rgb_image), tf.constant(1.0)
    assert float(argument_fn("Posterize", 9, sign, image)) == 4
    assert float(argument_fn("Posterize", 0, sign, image)) == 8
    assert float(argument_fn("Posterize", 5, sign, image)) == 6  # round(2.22)
    assert float(argument_fn("Solarize", 9, sign, image)) == pytest.approx(0.0)
    assert float(argument_fn("Rotate", 9, sign, image)) == pytest.approx(30.0)
    assert float(argument_fn("Color", 9, -sign, image)) == pytest.approx(0.1)
    assert float(argument_fn("TranslateX", 9, sign, image)) == pytest.approx(150 / 331 * 53)


def test_pil_exact_ops_match_pil(rgb_image):
    pil = Image.fromarray(rgb_image)
    np.testing.assert_array_equal(run("Equalize", rgb_image), np.asarray(ImageOps.equalize(pil)))
    np.testing.assert_array_equal(run("Posterize", rgb_image, 3),
                                  np.asarray(ImageOps.posterize(pil, 3)))
    np.testing.assert_array_equal(run("Solarize", rgb_image, 77),
                                  np.asarray(ImageOps.solarize(pil, 77)))


def test_auto_contrast_and_equalize_match_pil_on_low_contrast_image():
    rng = np.random.default_rng(1)
    image = rng.integers(60, 140, (20, 24, 3), dtype=np.uint8)
    image[..., 2] = 90  # A flat channel is left untouched.
    pil = Image.fromarray(image)
    got = run("AutoContrast", image).astype(int)
    assert np.abs(got - np.asarray(ImageOps.autocontrast(pil))).max() <= 1
    np.testing.assert_array_equal(got[..., 2], 90)
    np.testing.assert_array_equal(run("Equalize", image), np.asarray(ImageOps.equalize(pil)))


@pytest.mark.parametrize("name", sorted(ENHANCE))
@pytest.mark.parametrize("factor", [0.3, 1.7])
def test_enhance_ops_match_pil(name, factor, rgb_image):
    want = np.asarray(ENHANCE[name](Image.fromarray(rgb_image)).enhance(factor)).astype(int)
    got = run(name, rgb_image, factor).astype(int)
    assert np.abs(got - want).max() <= 2


def test_rotate_90_is_counter_clockwise_rot90():
    image = np.random.default_rng(2).integers(0, 256, (9, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(run("Rotate", image, 90.0), np.rot90(image))


def test_translate_shifts_content_and_fills_grey(rgb_image):
    out = run("TranslateX", rgb_image, 3.0)
    np.testing.assert_array_equal(out[:, 3:], rgb_image[:, :-3])
    np.testing.assert_array_equal(out[:, :3], aa.FILL_VALUE)
    out = run("TranslateY", rgb_image, -2.0)
    np.testing.assert_array_equal(out[:-2], rgb_image[2:])


def test_v0_arguments_match_model_garden_integer_levels(rgb_image):
    _, argument_fn = aa.POLICIES["v0"]
    image, sign = tf.constant(rgb_image), tf.constant(1.0)
    for level in range(11):  # int((level / 10) * multiplier) in the reference code
        assert float(argument_fn("SolarizeAdd", level, sign, image)) == int(level / 10 * 110)
        assert float(argument_fn("Solarize", level, sign, image)) == int(level / 10 * 256)
        assert float(argument_fn("Posterize", level, sign, image)) == max(int(level / 10 * 4), 1)
    assert float(argument_fn("Color", 9, sign, image)) == pytest.approx(1.72)


@pytest.mark.parametrize("policy", sorted(aa.POLICIES))
def test_policies_are_well_formed(policy):
    sub_policies, _ = aa.POLICIES[policy]
    max_magnitude = 9 if policy == "imagenet" else 10
    assert len(sub_policies) == 25
    for sub_policy in sub_policies:
        assert len(sub_policy) == 2
        for name, prob, magnitude in sub_policy:
            assert name in aa.OPS and 0.0 <= prob <= 1.0
            assert magnitude is None or 0 <= magnitude <= max_magnitude


@pytest.mark.parametrize("policy", sorted(aa.POLICIES))
def test_auto_augment_is_seeded_and_keeps_shape(policy, rgb_image):
    augment = tf.function(lambda x, s: aa.auto_augment(x, policy, s))
    outputs = [augment(tf.constant(rgb_image), tf.constant([i, 7])).numpy() for i in range(8)]
    again = augment(tf.constant(rgb_image), tf.constant([3, 7])).numpy()
    assert all(o.shape == rgb_image.shape and o.dtype == np.uint8 for o in outputs)
    np.testing.assert_array_equal(outputs[3], again)
    assert any((o != rgb_image).any() for o in outputs)


def test_auto_augment_in_tf_data_without_seed(rgb_image):
    ds = tf.data.Dataset.from_tensors(rgb_image).repeat(3).map(aa.auto_augment)
    for out in ds:
        assert out.shape == rgb_image.shape and out.dtype == tf.uint8


def test_unknown_policy_is_rejected(rgb_image):
    with pytest.raises(ValueError, match="policy='cifar'"):
        aa.auto_augment(rgb_image, policy="cifar")
