"""Python wrapper of the fused ``MultilevelRoiAlign`` op and its registered gradient.

Shape glossary: B images, N boxes per image, L levels ``min_level..min_level + L - 1``,
H_l x W_l the size of level l (stride ``2**l``), C channels, R ``output_size``.

The geometry is exactly that of :func:`mrcnn_tf2.ops.roi_align.multilevel_roi_align`
(FPN level assignment, ``aligned`` half-pixel offset or the legacy stretched boxes,
detectron2 border clamping). The op has no gradient for the boxes (the Mask R-CNN
boxes are ``stop_gradient`` targets/proposals); the plain-TF path has one through
``crop_and_resize``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from custom_ops import loader

LIBRARY = "roi_align"
_KERNEL_DTYPES = (tf.float32, tf.float64)
_built_with = {}  # the library that built forward ops: their gradient needs it even if disabled later


def library():
    """The loaded op library, or ``None`` (disabled, or build/load failed)."""
    return loader.load(LIBRARY)


def available() -> bool:
    """Whether the fused op can be used now."""
    return library() is not None


def multilevel_roi_align(features: Sequence[tf.Tensor], boxes, output_size: int = 7, sampling_ratio: int = 2,
                         aligned: bool = True, min_level: int = 2) -> Optional[tf.Tensor]:
    """Fused multilevel ROIAlign, or ``None`` when the op is unavailable (use the plain-TF path).

    Args:
      features: L tensors ``[B, H_l, W_l, C]`` for levels ``min_level, min_level + 1, ...``.
        float16/bfloat16 are computed in float32 and cast back.
      boxes: ``[B, N, 4]`` (ymin, xmin, ymax, xmax) in image pixels.
      output_size: ``R``.
      sampling_ratio: ``s >= 1`` samples per bin side.
      aligned: half-pixel offset (detectron2); ``False`` is the legacy geometry.
      min_level: level of ``features[0]``.

    Returns:
      ``[B, N, R, R, C]`` in the dtype of the features, or ``None``.
    """
    lib = library()
    if lib is None:
        return None
    _built_with[LIBRARY] = lib
    dtype = tf.as_dtype(features[0].dtype)
    compute = dtype if dtype in _KERNEL_DTYPES else tf.float32
    crops = lib.multilevel_roi_align([tf.cast(f, compute) for f in features], tf.cast(boxes, tf.float32),
                                     min_level=min_level, output_size=output_size,
                                     sampling_ratio=sampling_ratio, aligned=aligned)
    return tf.cast(crops, dtype)


@tf.RegisterGradient("MultilevelRoiAlign")
def _multilevel_roi_align_grad(op, grad):
    """Gradients of the L feature levels (fused scatter-add); none for the boxes."""
    num_levels = op.get_attr("num_levels")
    features, boxes = op.inputs[:num_levels], op.inputs[num_levels]
    grads = (_built_with.get(LIBRARY) or library()).multilevel_roi_align_grad(
        grad, boxes, list(features), min_level=op.get_attr("min_level"), output_size=op.get_attr("output_size"),
        sampling_ratio=op.get_attr("sampling_ratio"), aligned=op.get_attr("aligned"))
    return list(grads) + [None]
