"""AutoAugment (Cubuk et al., 2019, arXiv:1805.09501) in pure TensorFlow ops.

Shape glossary: H, W image height/width. Every image op takes and returns a
`[H, W, 3] uint8` RGB tensor, is graph-mode / `tf.data` friendly, and keeps
the shape and dtype of its input.

Two policies are provided as data (25 sub-policies of two ops each):

* ``"imagenet"`` -- the ImageNet policy of the AutoAugment paper (appendix
  table), as in torchvision's ``AutoAugmentPolicy.IMAGENET``. Magnitudes are
  bins 0..9 over the paper's ranges (``_paper_argument``).
* ``"v0"`` -- the policy of the TF EfficientNet / Model Garden
  ``AutoAugment('v0')`` code (used by the TF EfficientNet recipes, including
  NVIDIA's TF2 one). It is a *different* list despite its docstring; its
  levels 0..10 map to arguments as in that code (``_v0_argument``), including
  its absolute 250 px translation and 0..4 bit posterize.

Randomness is stateless: functions take an optional ``seed`` (a `[2]` int
tensor); with ``seed=None`` one is drawn from the global generator.
Affine ops use `tf.raw_ops.ImageProjectiveTransformV3` (nearest neighbour)
and fill uncovered pixels with grey ``FILL_VALUE``.
"""
import math

import tensorflow as tf

FILL_VALUE = 128
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL "L" mode.


def resolve_seed(seed=None):
    """Returns a stateless seed: `[2]` int32/int64 tensor (random if None)."""
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    return tf.convert_to_tensor(seed)


def _to_uint8(image):
    """Rounds, clips and casts: float [..] -> uint8 [..]."""
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


# ---------------------------------------------------------------- affine ops
def _projective(image, transform):
    """Warps image [H, W, 3] uint8 by an 8-vector output->input transform."""
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=tf.cast(tf.reshape(transform, [1, 8]), tf.float32),
        output_shape=tf.shape(image)[:2],
        fill_value=tf.constant(FILL_VALUE, tf.float32),
        interpolation="NEAREST",
        fill_mode="CONSTANT")
    return out[0]


def shear_x(image, factor):
    """Shears along x: output (x, y) samples input (x + factor*y, y)."""
    return _projective(image, [1.0, factor, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def shear_y(image, factor):
    """Shears along y: output (x, y) samples input (x, y + factor*x)."""
    return _projective(image, [1.0, 0.0, 0.0, factor, 1.0, 0.0, 0.0, 0.0])


def translate_x(image, pixels):
    """Shifts content right by `pixels` (float scalar, may be negative)."""
    return _projective(image, [1.0, 0.0, -pixels, 0.0, 1.0, 0.0, 0.0, 0.0])


def translate_y(image, pixels):
    """Shifts content down by `pixels` (float scalar, may be negative)."""
    return _projective(image, [1.0, 0.0, 0.0, 0.0, 1.0, -pixels, 0.0, 0.0])


def rotate(image, degrees):
    """Rotates about the image centre by `degrees` (float scalar)."""
    radians = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(radians), tf.sin(radians)
    size = tf.cast(tf.shape(image)[:2], tf.float32) - 1.0
    h, w = size[0], size[1]
    x_offset = (w - (cos * w - sin * h)) / 2.0
    y_offset = (h - (sin * w + cos * h)) / 2.0
    return _projective(image, tf.stack(
        [cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0]))


# ----------------------------------------------------------- histogram ops
def auto_contrast(image):
    """Stretches each channel so its min maps to 0 and its max to 255."""
    pixels = tf.cast(image, tf.float32)
    lo = tf.reduce_min(pixels, axis=[0, 1])
    hi = tf.reduce_max(pixels, axis=[0, 1])
    stretched = tf.floor((pixels - lo) * 255.0 / tf.maximum(hi - lo, 1.0))
    return tf.where(hi > lo, _to_uint8(stretched), image)


def _equalize_lut(hist):
    """PIL equalize look-up table: hist [3, 256] int32 -> lut [3, 256] int32."""
    last = 255 - tf.argmax(tf.reverse(hist, [1]) > 0, axis=1, output_type=tf.int32)
    last_count = tf.gather(hist, last, batch_dims=1)
    step = (tf.reduce_sum(hist, axis=1) - last_count) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    lut = (tf.cumsum(hist, axis=1) + safe_step // 2) // safe_step
    lut = tf.clip_by_value(tf.pad(lut[:, :-1], [[0, 0], [1, 0]]), 0, 255)
    identity = tf.broadcast_to(tf.range(256), tf.shape(lut))
    return tf.where(step[:, None] > 0, lut, identity)


def equalize(image):
    """Histogram-equalizes each channel (PIL ImageOps.equalize semantics)."""
    channels = tf.transpose(tf.reshape(tf.cast(image, tf.int32), [-1, 3]))
    hist = tf.math.bincount(channels, minlength=256, maxlength=256, axis=-1)
    lut = _equalize_lut(tf.cast(hist, tf.int32))
    mapped = tf.gather(lut, channels, batch_dims=1)
    return tf.reshape(tf.cast(tf.transpose(mapped), tf.uint8), tf.shape(image))


# --------------------------------------------------------------- point ops
def invert(image):
    """Returns 255 - image."""
    return 255 - image


def solarize(image, threshold):
    """Inverts pixels >= threshold (scalar, 0..256); 256 is the identity."""
    above = tf.cast(image, tf.float32) >= tf.cast(threshold, tf.float32)
    return tf.where(above, 255 - image, image)


def solarize_add(image, addition, threshold=128):
    """Adds `addition` (clipped to 0..255) to pixels below `threshold`."""
    pixels = tf.cast(image, tf.float32)
    added = _to_uint8(pixels + tf.cast(addition, tf.float32))
    return tf.where(pixels < tf.cast(threshold, tf.float32), added, image)


def posterize(image, bits):
    """Keeps the `bits` (int scalar, 0..8) most significant bits per pixel."""
    bits = tf.clip_by_value(tf.cast(bits, tf.int32), 0, 8)
    mask = tf.bitwise.bitwise_and(tf.bitwise.left_shift(255, 8 - bits), 255)
    return tf.bitwise.bitwise_and(image, tf.cast(mask, tf.uint8))


# ----------------------------------------------------- PIL ImageEnhance ops
def blend(degenerate, image, factor):
    """PIL enhance: degenerate + factor*(image - degenerate), as uint8.

    Args:
      degenerate: [H, W, 3] (or broadcastable) float32 or uint8.
      image: [H, W, 3] uint8.
      factor: float scalar; 1.0 returns `image`, 0.0 returns `degenerate`.
    """
    degenerate = tf.cast(degenerate, tf.float32)
    pixels = tf.cast(image, tf.float32)
    return _to_uint8(degenerate + tf.cast(factor, tf.float32) * (pixels - degenerate))


def _grayscale(image):
    """Luma: [H, W, 3] uint8 -> [H, W, 1] float32 rounded to integers."""
    weights = tf.constant(_GRAY_WEIGHTS, tf.float32)
    return tf.round(tf.reduce_sum(tf.cast(image, tf.float32) * weights, -1, keepdims=True))


def color(image, factor):
    """Adjusts saturation (blend with the grayscale image)."""
    return blend(_grayscale(image), image, factor)


def contrast(image, factor):
    """Adjusts contrast (blend with the mean grey level)."""
    return blend(tf.round(tf.reduce_mean(_grayscale(image))), image, factor)


def brightness(image, factor):
    """Adjusts brightness (blend with black)."""
    return blend(tf.zeros_like(image), image, factor)


def sharpness(image, factor):
    """Adjusts sharpness (blend with PIL's SMOOTH filter; borders kept)."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    pixels = tf.cast(image, tf.float32)
    smooth = tf.nn.depthwise_conv2d(pixels[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.pad(tf.round(smooth), [[1, 1], [1, 1], [0, 0]])
    inner = tf.pad(tf.ones_like(smooth[1:-1, 1:-1, :1], tf.bool), [[1, 1], [1, 1], [0, 0]])
    return blend(tf.where(inner, smooth, pixels), image, factor)


OPS = {
    "ShearX": shear_x, "ShearY": shear_y,
    "TranslateX": translate_x, "TranslateY": translate_y,
    "Rotate": rotate, "AutoContrast": auto_contrast, "Equalize": equalize,
    "Invert": invert, "Solarize": solarize, "SolarizeAdd": solarize_add,
    "Posterize": posterize, "Color": color, "Contrast": contrast,
    "Brightness": brightness, "Sharpness": sharpness,
}
_ENHANCE = frozenset({"Color", "Contrast", "Brightness", "Sharpness"})
_NO_ARGUMENT = frozenset({"AutoContrast", "Equalize", "Invert"})

# (op, probability, magnitude bin 0..9); Cubuk et al. 2019, ImageNet policy.
IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)

# (op, probability, level 0..10); TF EfficientNet / Model Garden 'v0'.
V0_POLICY = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)


def _paper_argument(name, magnitude, sign, image):
    """Op argument for a magnitude bin 0..9 (torchvision's 10-bin ranges).

    Args:
      name: op name (Python str).
      magnitude: float32 scalar bin.
      sign: float32 scalar, +1.0 or -1.0 (used by signed ops).
      image: [H, W, 3] uint8 (translations are relative to its size).
    """
    m = tf.cast(magnitude, tf.float32) / 9.0
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    table = {
        "ShearX": lambda: sign * 0.3 * m, "ShearY": lambda: sign * 0.3 * m,
        "TranslateX": lambda: sign * (150.0 / 331.0) * m * hw[1],
        "TranslateY": lambda: sign * (150.0 / 331.0) * m * hw[0],
        "Rotate": lambda: sign * 30.0 * m,
        "Solarize": lambda: 255.0 * (1.0 - m),
        "Posterize": lambda: 8.0 - tf.round(tf.cast(magnitude, tf.float32) * 4.0 / 9.0),
    }
    if name in _ENHANCE:
        return 1.0 + sign * 0.9 * m
    return table[name]()


def _v0_argument(name, level, sign, image):
    """Op argument for a TF 'v0' level 0..10 (Model Garden level_to_arg).

    Same argument types as `_paper_argument`; translations are absolute.
    """
    del image
    level = tf.cast(level, tf.float32)
    scaled = lambda maximum: level * maximum / 10.0  # noqa: E731 (exact for integers)
    table = {
        "ShearX": lambda: sign * scaled(0.3), "ShearY": lambda: sign * scaled(0.3),
        "TranslateX": lambda: sign * scaled(250.0), "TranslateY": lambda: sign * scaled(250.0),
        "Rotate": lambda: sign * scaled(30.0),
        "Solarize": lambda: tf.floor(scaled(256.0)),
        "SolarizeAdd": lambda: tf.floor(scaled(110.0)),
        # int(level / 10 * 4) may be 0; the reference's uint8 shift by 8 keeps 1 bit.
        "Posterize": lambda: tf.maximum(tf.floor(scaled(4.0)), 1.0),
    }
    if name in _ENHANCE:
        return scaled(1.8) + 0.1
    return table[name]()


POLICIES = {
    "imagenet": (IMAGENET_POLICY, _paper_argument),
    "v0": (V0_POLICY, _v0_argument),
}


def apply_op(image, name, magnitude, sign, argument_fn):
    """Applies op `name` at `magnitude`; `sign` (+-1.0 scalar) for signed ops."""
    if name in _NO_ARGUMENT:
        return OPS[name](image)
    return OPS[name](image, argument_fn(name, magnitude, sign, image))


def policy_tables(sub_policies):
    """Static policy -> op names and [N, 2] op index / probability / magnitude.

    Returns:
      (names tuple[str], op_index [N, 2] int32 into names,
       prob [N, 2] float32, magnitude [N, 2] float32 with None -> 0).
    """
    names = tuple(n for n in OPS if any(n == op[0] for sp in sub_policies for op in sp))
    index = [[names.index(name) for name, _, _ in sp] for sp in sub_policies]
    prob = [[p for _, p, _ in sp] for sp in sub_policies]
    magnitude = [[float(m or 0) for _, _, m in sp] for sp in sub_policies]
    return (names, tf.constant(index, tf.int32), tf.constant(prob, tf.float32),
            tf.constant(magnitude, tf.float32))


def _apply_selected_op(image, names, op_index, magnitude, sign, argument_fn):
    """Applies op names[op_index]; op_index == len(names) leaves image as is."""
    branches = [lambda name=name: apply_op(image, name, magnitude, sign, argument_fn)
                for name in names]
    return tf.switch_case(op_index, branches + [lambda: image])


def auto_augment(image, policy="imagenet", seed=None):
    """Applies one random sub-policy of an AutoAugment policy.

    One sub-policy is drawn uniformly; each of its two ops is applied with
    its probability, in order (one op-level `switch_case` per slot).

    Args:
      image: [H, W, 3] uint8 RGB.
      policy: "imagenet" (paper / torchvision) or "v0" (TF EfficientNet).
      seed: optional [2] int stateless seed.

    Returns:
      [H, W, 3] uint8, same shape as `image`.
    """
    if policy not in POLICIES:
        raise ValueError(f"Unknown AutoAugment policy. Received: policy={policy!r}; "
                         f"expected one of {sorted(POLICIES)}.")
    sub_policies, argument_fn = POLICIES[policy]
    names, op_index, prob, magnitude = policy_tables(sub_policies)
    image = tf.convert_to_tensor(image)
    u = tf.random.stateless_uniform([5], resolve_seed(seed))
    row = tf.minimum(tf.cast(u[0] * len(sub_policies), tf.int32), len(sub_policies) - 1)
    out = image
    for slot in range(2):
        apply = u[1 + slot] < prob[row, slot]
        selected = tf.where(apply, op_index[row, slot], len(names))
        sign = tf.where(u[3 + slot] < 0.5, -1.0, 1.0)
        out = _apply_selected_op(out, names, selected, magnitude[row, slot], sign, argument_fn)
    return tf.ensure_shape(out, image.shape)
