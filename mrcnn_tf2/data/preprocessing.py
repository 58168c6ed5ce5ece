"""Image and target transforms of the Mask R-CNN input (pure tensor functions).

Shape glossary
  H, W     original image height and width
  h, w     scaled size: ``round(H * scale)``, ``round(W * scale)``
  Hp, Wp   padded size (fixed for batches, else rounded up to ``pad_multiple``)
  N        instances of one image;  S  GT mask side (``gt_mask_size``)

Conventions
  * Boxes are ``[N, 4] float32`` (ymin, xmin, ymax, xmax) in pixels with continuous
    coordinates (``mrcnn_tf2.ops.box_ops``): pixel ``i`` covers ``[i, i + 1)``.
  * The resize keeps the aspect ratio, ``scale = min(short / min(H, W), long / max(H, W))``
    (NVIDIA / TPU Mask R-CNN), further capped so the image fits a fixed padded size.
  * The image goes top-left and the padding is zero after normalisation.
  * ``image_info`` is ``[5] float32``: (h, w, scale, H, W).
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from mrcnn_tf2.data.inputs import InputConfig


def decode_image(image_bytes: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes (scalar string) -> ``[H, W, 3] uint8``; gray/RGBA -> RGB."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def resize_scale(height, width, image_size: Sequence[int], padded_size=None) -> tf.Tensor:
    """Resize factor of an image.

    Args:
      height, width: original size, int or float scalars (tensors allowed).
      image_size: (short side target, long side max).
      padded_size: optional (Hp, Wp); the scaled image must fit inside it.

    Returns:
      ``[] float32``: ``min(short / min(H, W), long / max(H, W)[, Hp / H, Wp / W])``.
    """
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    short, long = float(image_size[0]), float(image_size[1])
    scale = tf.minimum(short / tf.minimum(height, width), long / tf.maximum(height, width))
    if padded_size is not None:
        fit = tf.minimum(float(padded_size[0]) / height, float(padded_size[1]) / width)
        scale = tf.minimum(scale, fit)
    return scale


def scaled_size(height, width, scale, padded_size=None, rounding: str = "round",
                image_size: Sequence[int] = None) -> tf.Tensor:
    """``[2] int32`` (h, w) = round((H, W) * scale), at most ``padded_size`` if given.

    ``rounding="floor"`` is torchvision's size, ``floor(H * s)`` with ``s`` recomputed in float64 from
    ``image_size`` (float32 would turn 480 * 800 / 480 into 799.99997 and floor it to 799).
    """
    if rounding == "floor":
        hw64 = tf.cast(tf.stack([height, width]), tf.float64)
        scale64 = tf.minimum(float(image_size[0]) / tf.reduce_min(hw64), float(image_size[1]) / tf.reduce_max(hw64))
        size = tf.cast(tf.floor(hw64 * scale64), tf.int32)
        size = tf.maximum(size, 1)
        return tf.minimum(size, tf.constant(padded_size, tf.int32)) if padded_size is not None else size
    hw = tf.cast(tf.stack([height, width]), tf.float32)
    size = tf.cast(tf.round(hw * scale), tf.int32)
    size = tf.maximum(size, 1)
    if padded_size is not None:
        size = tf.minimum(size, tf.constant(padded_size, tf.int32))
    return size


def resize_image(image: tf.Tensor, size) -> tf.Tensor:
    """Bilinear resize: ``[H, W, 3]`` any dtype -> ``[h, w, 3] float32`` (pixel scale)."""
    return tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")


def normalize_image(image: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """``[..., 3]`` pixels -> ``float32 (image - mean) / std`` per channel."""
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    return (tf.cast(image, tf.float32) - mean) / std


def round_up_size(size, multiple: int) -> tf.Tensor:
    """``[2]`` int sizes -> ``[2] int32`` rounded up to a multiple of ``multiple``."""
    size = tf.cast(size, tf.int32)
    return (size + multiple - 1) // multiple * multiple


def pad_to(image: tf.Tensor, padded_size) -> tf.Tensor:
    """Zero-pads ``[h, w, C]`` bottom/right to ``[Hp, Wp, C]`` (image stays top-left).

    Args:
      image: ``[h, w, C]`` with h <= Hp and w <= Wp.
      padded_size: (Hp, Wp) python ints (static output shape) or an int ``[2]`` tensor.
    """
    return tf.image.pad_to_bounding_box(image, 0, 0, padded_size[0], padded_size[1])


def flip_boxes(boxes: tf.Tensor, width) -> tf.Tensor:
    """Mirrors boxes left-right in an image of ``width``: ``x -> width - x``.

    Args:
      boxes: ``[N, 4] float32`` (ymin, xmin, ymax, xmax) in pixels.
      width: scalar image width in pixels.

    Returns:
      ``[N, 4] float32`` (ymin, width - xmax, ymax, width - xmin).
    """
    ymin, xmin, ymax, xmax = tf.unstack(tf.cast(boxes, tf.float32), num=4, axis=-1)
    width = tf.cast(width, tf.float32)
    return tf.stack([ymin, width - xmax, ymax, width - xmin], axis=-1)


def flip_masks(masks: tf.Tensor) -> tf.Tensor:
    """Mirrors ``[N, H, W]`` masks left-right (reverses the last axis)."""
    return tf.reverse(masks, axis=[-1])


def crop_masks_to_boxes(masks: tf.Tensor, boxes: tf.Tensor, size: int) -> tf.Tensor:
    """Crops each mask to its box and resizes it to ``size x size`` (ROIAlign-style).

    The ``size`` samples along each side sit at the centres of ``size`` equal bins of
    the box (continuous coordinates), bilinearly interpolated; outside the mask is 0.

    Args:
      masks: ``[N, H, W]`` uint8 or float, one full-image mask per instance.
      boxes: ``[N, 4] float32`` (ymin, xmin, ymax, xmax) in pixels of the masks.
      size: output side S.

    Returns:
      ``[N, S, S] float32`` in [0, 1] for {0, 1} masks.
    """
    hw = tf.cast(tf.shape(masks)[1:3], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(tf.cast(boxes, tf.float32), num=4, axis=-1)
    half_y, half_x = 0.5 * (ymax - ymin) / size, 0.5 * (xmax - xmin) / size
    last_y, last_x = tf.maximum(hw[0] - 1.0, 1.0), tf.maximum(hw[1] - 1.0, 1.0)
    crop_boxes = tf.stack([(ymin + half_y - 0.5) / last_y, (xmin + half_x - 0.5) / last_x,
                           (ymax - half_y - 0.5) / last_y, (xmax - half_x - 0.5) / last_x], -1)
    crops = tf.image.crop_and_resize(
        masks[..., tf.newaxis], crop_boxes, tf.range(tf.shape(boxes)[0]), [size, size],
        method="bilinear", extrapolation_value=0.0)
    return crops[..., 0]


def pad_instances(values: tf.Tensor, max_instances: int, pad_value) -> tf.Tensor:
    """Truncates or pads the first axis to ``max_instances`` (static).

    Args:
      values: ``[N, ...]`` with static trailing dimensions.
      max_instances: M.
      pad_value: value of the padding rows.

    Returns:
      ``[M, ...]``, same dtype.
    """
    values = values[:max_instances]
    missing = max_instances - tf.shape(values)[0]
    paddings = [[0, missing]] + [[0, 0]] * (values.shape.rank - 1)
    padded = tf.pad(values, paddings, constant_values=pad_value)
    return tf.ensure_shape(padded, [max_instances] + values.shape[1:].as_list())


def preprocess_image(image: tf.Tensor, config: "InputConfig", padded_size=None):
    """Resizes (aspect kept), normalises and pads one image.

    Works in a ``tf.function`` with unknown H, W (serving).

    Args:
      image: ``[H, W, 3] uint8``.
      config: ``InputConfig`` (image_size, mean, std, pad_multiple).
      padded_size: (Hp, Wp) to pad to exactly (and cap the scale with), or None to
        pad h, w up to multiples of ``config.pad_multiple``.

    Returns:
      (``[Hp, Wp, 3] float32`` normalised image, ``[5] float32`` image_info
      (h, w, scale, H, W)).
    """
    image = tf.convert_to_tensor(image)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    scale = resize_scale(height, width, config.image_size, padded_size)
    size = scaled_size(height, width, scale, padded_size, config.size_rounding, config.image_size)
    resized = normalize_image(resize_image(image, size), config.mean, config.std)
    target = padded_size if padded_size is not None else round_up_size(
        size, config.pad_multiple)
    info = tf.stack([tf.cast(size[0], tf.float32), tf.cast(size[1], tf.float32), scale,
                     tf.cast(height, tf.float32), tf.cast(width, tf.float32)])
    return pad_to(resized, target), info
