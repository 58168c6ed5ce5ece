"""The pixel budget (common.io.pixel_budget): declared sizes read from headers in Python and in TensorFlow ops,
for every format the decoders take; a bomb refused by the serving signatures' check before any decode."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import bad_files
from common.io import pixel_budget
from common.io.serving import decode_checked

FORMATS = [("JPEG", {}), ("JPEG", {"progressive": True}), ("JPEG", {"exif": b"Exif\x00\x00" + b"\x00" * 3000}),
           ("PNG", {}), ("GIF", {}), ("BMP", {}), ("WEBP", {}), ("WEBP", {"lossless": True})]


def _encoded(fmt, options, width=53, height=37):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, options", FORMATS)
def test_declared_size_in_python_and_in_tensorflow(fmt, options):
    data = _encoded(fmt, options)
    assert pixel_budget.declared_size(io.BytesIO(data)) == (53, 37)
    assert int(pixel_budget.declared_pixels(tf.constant(data))) == 53 * 37


def test_unknown_data_declares_nothing():
    assert pixel_budget.declared_size(io.BytesIO(b"hello world")) is None
    assert int(pixel_budget.declared_pixels(tf.constant(b"hello world"))) == 0


def test_serving_decode_refuses_a_bomb_before_decoding():
    """decode_checked (every serving_bytes signature): the bomb is invalid with a 1x1 placeholder, a normal
    image decodes; the budget is the one set when the graph is traced (export's --max-image-pixels)."""
    fn = tf.function(lambda data: decode_checked(data, lambda d: tf.io.decode_image(d, 3, expand_animations=False)))
    image, valid = fn(tf.constant(bad_files.bomb_png()))
    assert not bool(valid) and image.shape == (1, 1, 3)
    image, valid = fn(tf.constant(_encoded("PNG", {})))
    assert bool(valid) and image.shape == (37, 53, 3)
