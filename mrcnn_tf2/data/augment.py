"""Training augmentation for small data sets: scale jitter (SSJ / LSJ), multi-scale training, colour jitter.

Shapes: ``H, W`` the original image, ``Hp, Wp`` the fixed training canvas, ``K`` instances.

Scale jitter (:func:`scale_jitter`): the image is resized by ``s = s0 * r`` (``s0`` the usual fit to the canvas,
``r`` drawn from ``config.scale_jitter`` = ``(min, max)``, or ``r = side / short_side`` with ``side`` drawn from
``config.scale_choices``), then a canvas-sized window at a random offset is cropped when the image is larger and
the rest padded. Boxes are scaled, shifted and clipped to the window; an instance left thinner than 1 px is
dropped. The masks are not resampled twice: each kept box is mapped back to the original image
(``(clipped + offset) / s``) and the original mask is cropped there (:func:`prep.crop_masks_to_boxes`), so box,
mask and pixels stay aligned whatever the crop. Every draw is stateless from ``(seed, source_id)``: the same
``--seed`` gives the same augmentation on any number of replicas. ``--augmentation`` presets:
:data:`mrcnn_tf2.config.AUGMENTATIONS`.
"""
from __future__ import annotations

from typing import Tuple

import tensorflow as tf

from mrcnn_tf2.data import preprocessing as prep

def _uniforms(seed: tf.Tensor, count: int) -> tf.Tensor:
    """``[count]`` float32 in [0, 1) from a ``[2]`` int64 seed."""
    return tf.random.stateless_uniform([count], seed)


def _factor(config, seed: tf.Tensor) -> tf.Tensor:
    """The scale factor ``r`` of this image."""
    u = _uniforms(seed, 1)[0]
    if config.scale_choices:
        choices = tf.constant(config.scale_choices, tf.float32)
        return choices[tf.minimum(tf.cast(u * len(config.scale_choices), tf.int32), len(config.scale_choices) - 1)]
    low, high = config.scale_jitter
    return low + (high - low) * u


def color_jitter(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Brightness (+-32), contrast and saturation (x0.8-1.2) on ``[h, w, 3]`` float pixels in [0, 255]."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = tf.image.stateless_random_brightness(image, 32.0, seeds[0])
    image = tf.image.stateless_random_contrast(image, 0.8, 1.2, seeds[1])
    image = tf.image.stateless_random_saturation(image, 0.8, 1.2, seeds[2])
    return tf.clip_by_value(image, 0.0, 255.0)


def scale_jitter(image: tf.Tensor, boxes: tf.Tensor, config, padded_size: Tuple[int, int], seed: tf.Tensor):
    """One training image through scale jitter (module doc).

    Args:
      image: ``[H, W, 3]`` uint8; boxes: ``[K, 4]`` (ymin, xmin, ymax, xmax) original pixels.
      config: ``InputConfig`` (``scale_jitter`` or ``scale_choices``, ``color_jitter``, normalisation).
      padded_size: the canvas ``(Hp, Wp)``; seed: ``[2]`` int64.

    Returns:
      ``images [Hp, Wp, 3]`` float32 normalised, ``info [5]`` (valid h, valid w, scale, H, W),
      ``gt_boxes [K, 4]`` canvas pixels, ``mask_boxes [K, 4]`` original pixels (where each kept box's mask is
      cropped), ``keep [K]`` bool.
    """
    factor_seed, crop_seed, color_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    scale = prep.resize_scale(height, width, config.image_size, padded_size) * _factor(config, factor_seed)
    size = tf.maximum(tf.cast(tf.round(tf.cast(tf.stack([height, width]), tf.float32) * scale), tf.int32), 1)
    resized = prep.resize_image(image, size)
    if config.color_jitter:
        resized = color_jitter(resized, color_seed)
    canvas = tf.constant(padded_size, tf.int32)
    slack = tf.maximum(size - canvas, 0)
    offset = tf.cast(tf.floor(_uniforms(crop_seed, 2) * tf.cast(slack + 1, tf.float32)), tf.int32)
    offset = tf.minimum(offset, slack)
    valid = tf.minimum(size - offset, canvas)
    window = resized[offset[0]:offset[0] + valid[0], offset[1]:offset[1] + valid[1]]
    images = prep.pad_to(prep.normalize_image(window, config.mean, config.std), padded_size)
    shift = tf.cast(tf.tile(offset, [2]), tf.float32)
    clipped = _clip(boxes * scale - shift, valid)
    keep = tf.logical_and(clipped[:, 2] - clipped[:, 0] >= 1.0, clipped[:, 3] - clipped[:, 1] >= 1.0)
    info = tf.stack([tf.cast(valid[0], tf.float32), tf.cast(valid[1], tf.float32), scale,
                     tf.cast(height, tf.float32), tf.cast(width, tf.float32)])
    return images, info, clipped, (clipped + shift) / scale, keep


def _clip(boxes: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """``[K, 4]`` boxes clipped to ``[0, h] x [0, w]`` (``size [2]``)."""
    limits = tf.cast(tf.tile(size, [2]), tf.float32)
    return tf.clip_by_value(boxes, 0.0, limits)
