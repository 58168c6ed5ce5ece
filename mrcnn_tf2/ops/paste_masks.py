"""Paste per-box ``m x m`` mask probabilities into full ``H x W`` image canvases.

Shape glossary
  K     detections (masks and their boxes)
  m     mask resolution of the mask head (28)
  H, W  target image size (dynamic)

Geometry (detectron2 ``paste_masks_in_image``, i.e. ``grid_sample`` with
``align_corners=False`` and zero padding)
  * A box is ``(ymin, xmin, ymax, xmax)`` float32 in pixels of the target image, with
    continuous coordinates (see ``box_ops``). Mask cell ``i`` covers
    ``[ymin + i * h / m, ymin + (i + 1) * h / m)`` and its value sits at the cell centre.
  * Image pixel ``y`` is sampled at its centre ``y + 0.5``, i.e. at mask coordinate
    ``u = (y + 0.5 - ymin) * m / h - 0.5``, by bilinear interpolation in which cells
    outside ``0..m-1`` are 0. So the pasted mask fades to 0 within half a cell outside
    the box and is exactly 0 beyond; parts of a box outside the image are cut off.
  * Bilinear interpolation with zero padding is separable: the weight of cell ``i`` for
    coordinate ``u`` is the tent ``max(0, 1 - |u - i|)``. With ``Wy [K, H, m]`` and
    ``Wx [K, W, m]`` the pasted masks are ``Wy @ masks @ Wx^T``: two batched matmuls,
    exact in float32, any ``K`` (including 0) and dynamic ``H, W``.

``paste_masks`` is the one definition (usable in a SavedModel serving function);
``paste_masks_numpy`` runs it on numpy inputs for the COCO evaluator.

torchvision's ``paste_masks_in_image`` (legacy Detectron, the ``torchvision`` preset) is
:func:`paste_masks_torchvision`: the ``m x m`` mask is zero-padded by one cell, its box scaled by
``(m + 2) / m`` about the centre and truncated to integers ``x0, x1``; the padded mask is resized
bilinearly (``align_corners=False``, edge-clamped) to ``(x1 - x0 + 1)`` pixels and put at ``x0``. That
is separable too: the same two matmuls with those resize weights.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

# Smallest box side used as a divisor, in pixels: empty boxes paste (almost) nothing.
_MIN_SIZE = 1e-4


def _tent_weights(lo: tf.Tensor, hi: tf.Tensor, size: tf.Tensor, m: tf.Tensor) -> tf.Tensor:
    """Bilinear (zero-padded) weights of mask cells for every image pixel along one axis.

    Args:
      lo: ``[K]`` float32, box start (ymin or xmin) in pixels.
      hi: ``[K]`` float32, box end (ymax or xmax) in pixels.
      size: scalar int32, number of image pixels along the axis (H or W).
      m: scalar int32, mask resolution along the axis.

    Returns:
      ``[K, size, m]`` float32, ``max(0, 1 - |u - i|)`` with ``u`` the mask coordinate
      of pixel centre ``p + 0.5``.
    """
    m_f = tf.cast(m, tf.float32)
    centres = tf.range(tf.cast(size, tf.float32), dtype=tf.float32) + 0.5  # [size]
    extent = tf.maximum(hi - lo, _MIN_SIZE)[:, None]  # [K, 1]
    u = (centres[None, :] - lo[:, None]) * m_f / extent - 0.5  # [K, size]
    cells = tf.range(m_f, dtype=tf.float32)  # [m]
    return tf.nn.relu(1.0 - tf.abs(u[:, :, None] - cells[None, None, :]))


def paste_masks(masks, boxes, image_hw: Union[Sequence[int], tf.Tensor],
                threshold: Optional[float] = None) -> tf.Tensor:
    """Resize each mask bilinearly into its box on an ``H x W`` canvas (0 elsewhere).

    Args:
      masks: ``[K, m, m]`` float, mask probabilities inside each box (a non-square
        ``[K, m_y, m_x]`` works too).
      boxes: ``[K, 4]`` float, (ymin, xmin, ymax, xmax) in pixels of the target image;
        boxes may extend past the image (the outside part is cut off).
      image_hw: ``(H, W)`` ints or an int tensor of shape ``[2]`` (may be dynamic).
      threshold: if given, return ``uint8`` masks ``pasted >= threshold``.

    Returns:
      ``[K, H, W]`` float32 pasted probabilities, or ``uint8`` 0/1 when ``threshold``
      is given.
    """
    masks = tf.cast(masks, tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(tf.cast(boxes, tf.float32), num=4, axis=-1)
    image_hw = tf.cast(image_hw, tf.int32)
    mask_hw = tf.shape(masks)[1:3]
    weights_y = _tent_weights(ymin, ymax, image_hw[0], mask_hw[0])  # [K, H, m]
    weights_x = _tent_weights(xmin, xmax, image_hw[1], mask_hw[1])  # [K, W, m]
    pasted = tf.matmul(tf.matmul(weights_y, masks), weights_x, transpose_b=True)
    if threshold is None:
        return pasted
    return tf.cast(pasted >= threshold, tf.uint8)


PASTE_MODES = ("continuous", "torchvision")


def paste(masks, boxes, image_hw, mode: str = "continuous", threshold: Optional[float] = None) -> tf.Tensor:
    """:func:`paste_masks` (``continuous``) or :func:`paste_masks_torchvision` (``torchvision``)."""
    if mode == "torchvision":
        return paste_masks_torchvision(masks, boxes, image_hw, threshold=threshold)
    if mode != "continuous":
        raise ValueError(f"Received: mode={mode!r}; expected one of {PASTE_MODES}")
    return paste_masks(masks, boxes, image_hw, threshold=threshold)


@tf.function(reduce_retracing=True)
def _paste_graph(masks, boxes, image_hw, threshold, mode):
    """:func:`paste` thresholded, traced once per mode for all sizes (used by the numpy path)."""
    return paste(masks, boxes, image_hw, mode, threshold)


def paste_masks_numpy(masks: np.ndarray, boxes: np.ndarray, image_hw: Sequence[int],
                      threshold: Optional[float] = None, mode: str = "continuous") -> np.ndarray:
    """``paste_masks`` on numpy arrays (same algorithm, run through TF).

    Args:
      masks: ``[K, m, m]`` float mask probabilities.
      boxes: ``[K, 4]`` float, (ymin, xmin, ymax, xmax) in pixels of the target image.
      image_hw: ``(H, W)`` ints.
      threshold: if given, return ``uint8`` masks ``pasted >= threshold``.
      mode: one of :data:`PASTE_MODES`.

    Returns:
      ``[K, H, W]`` float32 numpy array, or ``uint8`` when ``threshold`` is given.
    """
    masks = np.asarray(masks, np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    image_hw = np.asarray(image_hw, np.int32)
    if threshold is None:
        return paste(masks, boxes, image_hw, mode).numpy()
    return _paste_graph(masks, boxes, image_hw, np.float32(threshold), mode).numpy()


def _resize_weights(start: tf.Tensor, length: tf.Tensor, size: tf.Tensor, cells: int) -> tf.Tensor:
    """torch ``interpolate(bilinear, align_corners=False)`` of ``cells`` values onto ``length`` pixels at ``start``.

    Args:
      start: ``[K]`` int32, first pixel of each resized mask (may be negative).
      length: ``[K]`` int32 >= 1, pixels of each resized mask.
      size: scalar int32, image pixels along the axis.
      cells: mask cells along the axis.

    Returns:
      ``[K, size, cells]`` float32; rows of pixels outside ``[start, start + length)`` are 0.
    """
    pixels = tf.range(size)[None, :]  # [1, size]
    offset = pixels - start[:, None]  # [K, size]
    inside = tf.logical_and(offset >= 0, offset < length[:, None])
    scale = float(cells) / tf.cast(length, tf.float32)[:, None]
    source = tf.maximum((tf.cast(offset, tf.float32) + 0.5) * scale - 0.5, 0.0)
    low = tf.minimum(tf.floor(source), cells - 1.0)
    high = tf.minimum(low + 1.0, cells - 1.0)
    frac = source - low
    index = tf.range(cells, dtype=tf.float32)[None, None, :]
    weights = (tf.cast(tf.equal(index, low[..., None]), tf.float32) * (1.0 - frac)[..., None]
               + tf.cast(tf.equal(index, high[..., None]), tf.float32) * frac[..., None])
    return tf.where(inside[..., None], weights, 0.0)


def torchvision_paste_boxes(boxes: np.ndarray, mask_size: int = 28, padding: int = 1) -> np.ndarray:
    """``[K, 4]`` (ymin, xmin, ymax, xmax) -> ``[K, 4] int64``: the integer box each mask is pasted in
    (torchvision's ``expand_boxes(boxes, (m + 2p) / m).to(int64)``, as :func:`paste_masks_torchvision`).

    The truncation makes the paste discontinuous: a box edge within float noise of an integer moves
    its whole mask by one pixel, so two runs agree on a mask only where these boxes agree.
    """
    boxes = np.asarray(boxes, np.float32)
    scale = np.float32(mask_size + 2 * padding) / np.float32(mask_size)
    centre, half = (boxes[..., :2] + boxes[..., 2:]) * 0.5, (boxes[..., 2:] - boxes[..., :2]) * 0.5 * scale
    return np.trunc(np.concatenate([centre - half, centre + half], -1)).astype(np.int64)


def paste_masks_torchvision(masks, boxes, image_hw: Union[Sequence[int], tf.Tensor], padding: int = 1,
                            threshold: Optional[float] = None) -> tf.Tensor:
    """torchvision's ``paste_masks_in_image`` (see the module docstring), as two batched matmuls.

    Args:
      masks: ``[K, m, m]`` float mask probabilities.
      boxes: ``[K, 4]`` float (ymin, xmin, ymax, xmax) in pixels of the target image.
      image_hw: ``(H, W)``.
      padding: cells of zeros around each mask (torchvision: 1).
      threshold: if given, ``uint8`` masks ``pasted > threshold`` (torchvision users compare ``> 0.5``).

    Returns:
      ``[K, H, W]`` float32 probabilities, or ``uint8`` 0/1 with ``threshold``.
    """
    masks = tf.pad(tf.cast(masks, tf.float32), [[0, 0], [padding, padding], [padding, padding]])
    cells = int(masks.shape[1]) if masks.shape[1] is not None else None
    m = cells - 2 * padding
    scale = float(cells) / m
    boxes = tf.cast(boxes, tf.float32)
    centre = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    lo = tf.cast(centre - half, tf.int32)  # truncation toward zero, as torch's .to(int64)
    hi = tf.cast(centre + half, tf.int32)
    length = tf.maximum(hi - lo + 1, 1)
    image_hw = tf.cast(image_hw, tf.int32)
    weights_y = _resize_weights(lo[:, 0], length[:, 0], image_hw[0], cells)
    weights_x = _resize_weights(lo[:, 1], length[:, 1], image_hw[1], cells)
    pasted = tf.matmul(tf.matmul(weights_y, masks), weights_x, transpose_b=True)
    if threshold is None:
        return pasted
    return tf.cast(pasted > threshold, tf.uint8)
