"""Multilevel anchor generator for the RPN (levels P2..P6, 3 anchors per location).

Shape glossary
  L         pyramid levels ``min_level..max_level`` (2..6)
  H_l, W_l  feature-map size at level ``l``: ``ceil(H / 2**l), ceil(W / 2**l)``
  A         anchors per location: ``num_scales * len(aspect_ratios)`` (3)
  N         all anchors of an image: ``sum_l H_l * W_l * A``

Conventions (the seed's ``mrcnn_tf2/model/anchors.py``, i.e. the TPU / Model Garden
``Anchors`` class)
  * ``aspect_ratios`` are ``(w, h)`` multiplier *pairs*, not a scalar ratio: the anchor
    with pair ``(ax, ay)`` at base size ``s`` is ``s * ax`` wide and ``s * ay`` high. So
    ``(1.4, 0.7)`` is a wide box, ``(0.7, 1.4)`` a tall one, and their area is
    ``0.98 * s**2`` (the pairs are rounded from ``sqrt(2)``, ``1/sqrt(2)``).
  * Base size at level ``l`` and octave ``k``: ``anchor_scale * 2**l * 2**(k / num_scales)``;
    with ``anchor_scale=8`` the square anchors are 32, 64, 128, 256, 512 pixels on P2..P6.
  * Centres are at ``stride * (i + offset)`` for ``i = 0..H_l-1``; ``offset = 0.5`` is the
    seed's ``np.arange(stride / 2, H, stride)``, 0 torchvision's; continuous pixel coordinates
    of ``box_ops``. (torchvision also rounds the half sizes and takes the stride as
    ``image size // feature size``: the ``TORCHVISION_ANCHORS`` fields.) The grid has ``ceil(H / stride)`` rows, which equals the seed's count
    when ``H`` is a multiple of ``2**max_level`` and otherwise matches the size of a
    'same'-padded feature map.
  * Order inside a level is ``(y, x, a)`` row-major, ``a = octave * len(aspect_ratios) +
    ratio_index``: exactly the order of an RPN head output ``[B, H_l, W_l, A * 4]``
    reshaped to ``[B, H_l * W_l * A, 4]``. Concatenation is by increasing level.
  * Anchors are ``float32`` ``(ymin, xmin, ymax, xmax)`` in pixels, computed once in
    numpy (float64) and returned as constants.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Sequence, Tuple

import numpy as np
import tensorflow as tf

from mrcnn_tf2.config import ASPECT_RATIOS, AnchorConfig  # noqa: F401  (ASPECT_RATIOS: re-exported)



def concat_levels(per_level: Dict[int, tf.Tensor], axis: int = 0) -> tf.Tensor:
    """Concatenates per-level tensors in increasing level order.

    Args:
      per_level: ``{level: [..., N_l, ...]}`` tensors, same rank and dtype.
      axis: the anchor axis (0 for ``[N_l, 4]``, 1 for ``[B, N_l, ...]``).

    Returns:
      ``[..., N, ...]`` with ``N = sum_l N_l``.
    """
    return tf.concat([per_level[level] for level in sorted(per_level)], axis=axis)


@dataclasses.dataclass(frozen=True)
class AnchorGenerator(AnchorConfig):
    """Anchors of every pyramid level for an image size (NVIDIA config defaults).

    The fields and their checks are :class:`mrcnn_tf2.config.AnchorConfig`'s (one source):
    ``AnchorGenerator(**dataclasses.asdict(config.anchors))`` builds the model's generator.
    """

    def feature_size(self, image_size: Sequence[int], level: int) -> Tuple[int, int]:
        """``(H_l, W_l) = (ceil(H / 2**l), ceil(W / 2**l))`` for ``image_size = (H, W)``."""
        stride = 2 ** level
        return math.ceil(image_size[0] / stride), math.ceil(image_size[1] / stride)

    def anchor_sizes(self, level: int) -> np.ndarray:
        """``[A, 2]`` float64 ``(height, width)`` of the anchors at ``level``, in pixels."""
        sizes = []
        for octave in range(self.num_scales):
            base = self.anchor_scale * 2 ** level * 2 ** (octave / self.num_scales)
            sizes += [(base * ay, base * ax) for ax, ay in self.aspect_ratios]
        return np.asarray(sizes, np.float64)

    def level_strides(self, image_size: Sequence[int], level: int) -> Tuple[int, int]:
        """``(stride_y, stride_x)``: ``2**level``, or ``image size // feature size`` (``stride_from_sizes``)."""
        if not self.stride_from_sizes:
            return 2 ** level, 2 ** level
        rows, cols = self.feature_size(image_size, level)
        return int(image_size[0]) // rows, int(image_size[1]) // cols

    def level_anchors(self, image_size: Sequence[int], level: int) -> np.ndarray:
        """``[H_l * W_l * A, 4]`` float32 numpy anchors of one level, ``(y, x, a)`` order."""
        stride_y, stride_x = self.level_strides(image_size, level)
        rows, cols = self.feature_size(image_size, level)
        yc = (np.arange(rows) + self.offset)[:, None, None] * stride_y  # [H_l, 1, 1]
        xc = (np.arange(cols) + self.offset)[None, :, None] * stride_x  # [1, W_l, 1]
        half = self.anchor_sizes(level) / 2.0  # [A, 2]
        if self.round_half_sizes:
            half = np.round(half)
        hh, hw = half[:, 0], half[:, 1]
        shape = (rows, cols, len(half))
        boxes = [np.broadcast_to(v, shape) for v in (yc - hh, xc - hw, yc + hh, xc + hw)]
        return np.stack(boxes, axis=-1).reshape(-1, 4).astype(np.float32)

    def __call__(self, image_size: Sequence[int]) -> Dict[int, tf.Tensor]:
        """Anchors of every level.

        Args:
          image_size: ``(H, W)`` of the (padded) network input, python ints.

        Returns:
          ``{level: [H_l * W_l * A, 4] float32}``, (ymin, xmin, ymax, xmax) in pixels.
        """
        return {level: tf.constant(self.level_anchors(image_size, level)) for level in self.levels}

    def concatenated(self, image_size: Sequence[int]) -> tf.Tensor:
        """``[N, 4]`` float32 anchors of all levels, increasing level order."""
        return concat_levels(self(image_size))

    def level_counts(self, image_size: Sequence[int]) -> Dict[int, int]:
        """``{level: H_l * W_l * A}``, the number of anchors per level."""
        return {level: int(np.prod(self.feature_size(image_size, level))) * self.anchors_per_location
                for level in self.levels}

    def split_levels(self, values: tf.Tensor, image_size: Sequence[int], axis: int = 0) -> Dict[int, tf.Tensor]:
        """Inverse of :func:`concat_levels` for per-anchor values (e.g. RPN targets).

        Args:
          values: ``[..., N, ...]`` tensor with the anchor axis at ``axis``.
          image_size: ``(H, W)`` used to generate the anchors.
          axis: the anchor axis.

        Returns:
          ``{level: [..., H_l * W_l * A, ...]}``.
        """
        counts = self.level_counts(image_size)
        parts = tf.split(values, [counts[level] for level in self.levels], axis=axis)
        return dict(zip(self.levels, parts))
