"""Encoded-image decoding inside exported graphs that never fails a whole batch.

``serving_bytes`` signatures decode a ``[B] string`` batch in the graph, where an exception
cannot be caught per image. :func:`decode_checked` first runs the same structural checks
as :func:`common.io.data_check.image_problem` (non-empty, a JPEG/PNG/GIF/BMP/WebP signature,
the JPEG end-of-image marker / PNG ``IEND`` within the last 4 KB, the GIF trailer), decodes
only what passes and gives a 1x1 black placeholder plus ``valid = False`` otherwise; the
signatures return that flag as the ``valid`` output and blank the invalid images'
predictions. A header declaring more pixels than the export's budget (``--max-image-pixels``) is invalid
too, so a decompression bomb is never decoded. Damage that these checks cannot see (a corrupt middle of an otherwise
complete JPEG) still fails the decode, as in TensorFlow's own decoders.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import tensorflow as tf

from common.io.data_check import TAIL_BYTES

_PNG = b"\x89PNG\r\n\x1a\n"


def _contains(data: tf.Tensor, marker: bytes) -> tf.Tensor:
    """Scalar bool: ``marker`` occurs in the scalar string ``data`` (byte-wise)."""
    return tf.size(tf.strings.split(data, sep=marker)) > 1


def encoded_image_ok(data: tf.Tensor) -> tf.Tensor:
    """Scalar string -> scalar bool: passes the structural checks of the module docstring."""
    length = tf.strings.length(data)
    head = tf.strings.substr(data + b"\x00" * 12, 0, 12)  # padded: substr positions must exist
    tail = tf.strings.substr(data, tf.maximum(length - TAIL_BYTES, 0), TAIL_BYTES)
    starts = lambda prefix: tf.equal(tf.strings.substr(head, 0, len(prefix)), prefix)  # noqa: E731
    jpeg = tf.logical_and(starts(b"\xff\xd8\xff"), _contains(tail, b"\xff\xd9"))
    png = tf.logical_and(starts(_PNG), _contains(tail, b"IEND"))
    last = tf.strings.substr(data, tf.maximum(length - 1, 0), 1)
    gif = tf.logical_and(tf.logical_or(starts(b"GIF87a"), starts(b"GIF89a")), tf.equal(last, b";"))
    bmp = starts(b"BM")
    webp = tf.logical_and(starts(b"RIFF"), tf.equal(tf.strings.substr(head, 8, 4), b"WEBP"))
    return tf.logical_and(length > 0, tf.reduce_any(tf.stack([jpeg, png, gif, bmp, webp])))


def decode_checked(data: tf.Tensor, decode: Callable[[tf.Tensor], tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
    """Scalar string -> (``[H, W, 3] uint8`` image or a 1x1 placeholder, scalar bool valid). Images declaring
    more pixels than the budget at trace time (:mod:`common.io.pixel_budget`, ``--max-image-pixels`` of the
    export) are invalid before any decode."""
    from common.io.pixel_budget import declared_pixels, max_pixels

    budget = max_pixels()
    structured = encoded_image_ok(data)
    valid = tf.cond(structured, lambda: declared_pixels(data) <= budget, lambda: tf.constant(False))
    image = tf.cond(valid, lambda: tf.ensure_shape(decode(data), [None, None, 3]),
                    lambda: tf.zeros([1, 1, 3], tf.uint8))
    return image, valid


def blank_invalid(outputs: Dict[str, tf.Tensor], valid: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Zeros (empty strings) every ``[B, ...]`` output of the images with ``valid [B]`` False; adds ``valid``."""
    blanked = {}
    for name, value in outputs.items():
        keep = tf.reshape(valid, tf.concat([tf.shape(valid), tf.ones([tf.rank(value) - 1], tf.int32)], 0))
        keep = tf.broadcast_to(keep, tf.shape(value))
        blanked[name] = tf.where(keep, value, tf.zeros_like(value))
    blanked["valid"] = valid
    return blanked
