"""EfficientNet image preprocessing: pure tensor functions.

Shape glossary: H, W decoded image height/width; S the model input size.
Decoded images are `[H, W, 3] uint8` RGB; model inputs are `[S, S, 3]
float32` normalized with the ImageNet mean/stddev (in 0..255 units).

Train: random-resized crop (torchvision semantics: 10 attempts, then a
centre crop clamped to the aspect-ratio range) -> horizontal flip ->
optional AutoAugment -> normalize. For JPEG bytes the crop is decoded
directly with `tf.io.decode_and_crop_jpeg`.
Eval (NVIDIA recipe): resize the short side to S + 32 keeping the aspect
ratio (torchvision `Resize(int)`), centre-crop S x S, normalize.

Randomness is stateless: functions take an optional `seed` (`[2]` int
tensor); with None a seed is drawn from the global generator.
"""
import math

import tensorflow as tf

from efficientnet_tf2 import autoaugment

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
EVAL_RESIZE_MARGIN = 32
AUGMENTATIONS = ("autoaugment", "autoaugment-v0", "none")
_CROP_ATTEMPTS = 10


def normalize(image):
    """[..., H, W, 3] uint8 or float in [0, 255] -> float32 (x - mean) / std."""
    image = tf.cast(image, tf.float32)
    return (image - tf.constant(MEAN_RGB)) / tf.constant(STDDEV_RGB)


def denormalize(images: "np.ndarray") -> "np.ndarray":
    """Inverse of :func:`normalize` on numpy: float32 ``[..., 3]`` -> the uint8 pixels it came from.

    Exact for normalised uint8 pixels: float32 rounding moves ``x * std + mean`` by ~1e-5, far
    below the 0.5 that :func:`numpy.rint` absorbs.
    """
    import numpy as np

    pixels = np.asarray(images, np.float32) * np.float32(STDDEV_RGB) + np.float32(MEAN_RGB)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def decode_image(image_bytes):
    """Decodes JPEG/PNG/GIF/BMP/WebP bytes (scalar string) -> [H, W, 3] uint8.

    Grayscale, RGBA and CMYK (JPEG) inputs become RGB; GIFs give frame 0.
    """
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image = tf.ensure_shape(image, [None, None, 3])
    return image


def resize_uint8(image, height, width):
    """Bilinear (antialiased) resize: [H, W, 3] uint8 -> [height, width, 3] uint8."""
    resized = tf.image.resize(image, tf.stack([height, width]), "bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _fallback_crop(height, width, ratio):
    """Centre crop clamped to `ratio`: int32 scalars -> (y, x, h, w) int32."""
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    in_ratio = w / h
    crop_w = tf.where(in_ratio > ratio[1], tf.round(h * ratio[1]), w)
    crop_h = tf.where(in_ratio < ratio[0], tf.round(w / ratio[0]), h)
    crop_h, crop_w = tf.cast(crop_h, tf.int32), tf.cast(crop_w, tf.int32)
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def sample_crop_box(image_shape, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None):
    """Samples a RandomResizedCrop window (torchvision algorithm).

    Args:
      image_shape: [2] or [3] int32, (H, W[, C]).
      scale: (min, max) fraction of the image area.
      ratio: (min, max) width / height aspect ratio.
      seed: optional [2] int stateless seed.

    Returns:
      [4] int32 (offset_y, offset_x, crop_h, crop_w).
    """
    height, width = tf.cast(image_shape[0], tf.int32), tf.cast(image_shape[1], tf.int32)
    u = tf.random.stateless_uniform([4, _CROP_ATTEMPTS], autoaugment.resolve_seed(seed))
    area = tf.cast(height * width, tf.float32) * (scale[0] + (scale[1] - scale[0]) * u[0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = tf.exp(log_lo + (log_hi - log_lo) * u[1])
    crop_w = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
    crop_h = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    crop_h, crop_w = crop_h[first], crop_w[first]
    offset_y = tf.cast(u[2, first] * tf.cast(height - crop_h + 1, tf.float32), tf.int32)
    offset_x = tf.cast(u[3, first] * tf.cast(width - crop_w + 1, tf.float32), tf.int32)
    sampled = tf.stack([offset_y, offset_x, crop_h, crop_w])
    fallback = tf.stack(_fallback_crop(height, width, ratio))
    return tf.where(tf.reduce_any(fits), sampled, fallback)


def random_resized_crop(image, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None):
    """Random-resized crop of a decoded image.

    Args:
      image: [H, W, 3] uint8.
      size: int, output side S.

    Returns:
      [S, S, 3] uint8.
    """
    box = sample_crop_box(tf.shape(image), scale, ratio, seed)
    crop = tf.slice(image, [box[0], box[1], 0], [box[2], box[3], 3])
    return resize_uint8(crop, size, size)


def decode_and_random_crop(image_bytes, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                           seed=None):
    """Random-resized crop straight from encoded bytes.

    JPEGs decode only the crop window (`tf.io.decode_and_crop_jpeg`); other
    formats (PNG, ...) are fully decoded then cropped.

    Args:
      image_bytes: scalar string, encoded JPEG/PNG/GIF/BMP/WebP.
      size: int, output side S.

    Returns:
      [S, S, 3] uint8.
    """
    def from_jpeg():
        box = sample_crop_box(tf.io.extract_jpeg_shape(image_bytes), scale, ratio, seed)
        return tf.io.decode_and_crop_jpeg(image_bytes, box, channels=3)

    def from_other():
        return random_resized_crop(decode_image(image_bytes), size, scale, ratio, seed)

    crop = tf.cond(tf.io.is_jpeg(image_bytes), from_jpeg, from_other)
    crop = tf.ensure_shape(crop, [None, None, 3])
    return resize_uint8(crop, size, size)


def random_flip(image, seed=None):
    """Left-right flip with probability 0.5: [H, W, 3] -> [H, W, 3], same dtype."""
    return tf.image.stateless_random_flip_left_right(image, autoaugment.resolve_seed(seed))


def eval_resize_crop(image, image_size):
    """Short side -> S + 32 (aspect kept), then centre crop; NOT normalized.

    Args:
      image: [H, W, 3] uint8.
      image_size: int, S.

    Returns:
      [S, S, 3] uint8.
    """
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    short = image_size + EVAL_RESIZE_MARGIN
    new_h = short * h // tf.minimum(h, w)  # torchvision: int(short * long / short_side)
    new_w = short * w // tf.minimum(h, w)
    resized = resize_uint8(image, new_h, new_w)
    top = tf.cast(tf.round(tf.cast(new_h - image_size, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_w - image_size, tf.float32) / 2.0), tf.int32)
    crop = tf.slice(resized, [top, left, 0], [image_size, image_size, 3])
    return tf.ensure_shape(crop, [image_size, image_size, 3])


def preprocess_for_eval(image, image_size):
    """[H, W, 3] uint8 -> [S, S, 3] float32 normalized (resize + centre crop)."""
    return normalize(eval_resize_crop(image, image_size))


def augment_crop(crop, augment="autoaugment", seed=None):
    """Flip + optional AutoAugment + normalize an already-cropped image.

    Args:
      crop: [S, S, 3] uint8.
      augment: one of AUGMENTATIONS ("autoaugment" is the paper's ImageNet
        policy, "autoaugment-v0" the TF EfficientNet policy).
      seed: optional [2] int stateless seed.

    Returns:
      [S, S, 3] float32 normalized.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation. Received: augment={augment!r}; "
                         f"expected one of {AUGMENTATIONS}.")
    flip_seed, aa_seed = tf.unstack(
        tf.random.experimental.stateless_split(autoaugment.resolve_seed(seed), 2))
    image = random_flip(crop, flip_seed)
    if augment != "none":
        policy = "v0" if augment == "autoaugment-v0" else "imagenet"
        image = autoaugment.auto_augment(image, policy, aa_seed)
    return normalize(image)


def preprocess_for_train(image, image_size, augment="autoaugment", seed=None):
    """[H, W, 3] uint8 -> [S, S, 3] float32: crop, flip, augment, normalize."""
    crop_seed, aug_seed = tf.unstack(
        tf.random.experimental.stateless_split(autoaugment.resolve_seed(seed), 2))
    crop = random_resized_crop(image, image_size, seed=crop_seed)
    return augment_crop(crop, augment, aug_seed)
