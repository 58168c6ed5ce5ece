"""Images are decoded under a pixel budget, so a decompression bomb is named and skipped with bounded memory.

A 64 KB PNG can declare 23000x23000 pixels (1.6 GB decoded as RGB, several copies in a pipeline). Every
decode of an untrusted file is preceded by reading the size the file *declares* in its header, with no
decoding: PNG ``IHDR``, GIF logical screen, BMP header, WebP ``VP8X``/``VP8L``/``VP8`` header, and the JPEG
start-of-frame found by walking the marker segments. A file declaring more than the budget
(``--max-image-pixels``, default :data:`DEFAULT_MAX_PIXELS`, 100 MP) is refused by name:

- the pre-run data checks (:func:`common.io.data_check.image_problem`, both families): listed as unusable;
- ``infer`` of both models and the Python API: that image fails with one line, the others go on;
- exported ``serving_bytes`` signatures: :func:`declared_pixels` (the same header reading as TensorFlow ops)
  marks it ``valid = False`` before any decode (the budget is fixed at export time).
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Optional, Tuple

DEFAULT_MAX_PIXELS = 100_000_000
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_MAX_SEGMENTS = 512  # a JPEG whose frame header is not within this many segments is not sized here

_budget = DEFAULT_MAX_PIXELS


def set_max_pixels(pixels: Optional[int]) -> None:
    """The process's budget (``--max-image-pixels``; None: the default); PIL's own bomb guard follows it."""
    global _budget
    _budget = int(pixels or DEFAULT_MAX_PIXELS)
    try:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = _budget
    except ImportError:  # pragma: no cover - PIL is a dependency
        pass


def max_pixels() -> int:
    return _budget


def _jpeg_size(handle: BinaryIO) -> Optional[Tuple[int, int]]:
    """``(width, height)`` from the first start-of-frame segment; the file positioned after its SOI."""
    handle.seek(2)
    for _ in range(_JPEG_MAX_SEGMENTS):
        marker = handle.read(2)
        while len(marker) == 2 and marker[0] == 0xFF and marker[1] == 0xFF:  # fill bytes
            marker = marker[1:] + handle.read(1)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        if marker[1] in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            continue
        length = handle.read(2)
        if len(length) < 2:
            return None
        if marker[1] in _JPEG_SOF:
            frame = handle.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        segment = struct.unpack(">H", length)[0]
        if segment < 2:
            return None
        handle.seek(segment - 2, 1)
    return None


def _header_size(head: bytes) -> Optional[Tuple[int, int]]:
    """``(width, height)`` of a PNG / GIF / BMP / WebP from its first 32 bytes (None: another format)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        chunk = head[12:16]
        if chunk == b"VP8X":
            return (int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1)
        if chunk == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", head[26:30])
            return width & 0x3FFF, height & 0x3FFF
    return None


def declared_size(handle: BinaryIO) -> Optional[Tuple[int, int]]:
    """``(width, height)`` an open image file declares, read from its header only (None: not found)."""
    handle.seek(0)
    head = handle.read(32)
    if head.startswith(b"\xff\xd8\xff"):
        return _jpeg_size(handle)
    return _header_size(head)


def size_problem(path: str, budget: Optional[int] = None) -> Optional[str]:
    """Why ``path`` may not be decoded under the budget (None: it may, or its size is not declared where read).

    Raises:
      OSError: the file cannot be read.
    """
    with open(path, "rb") as handle:
        return budget_problem(declared_size(handle), budget)


def budget_problem(size: Optional[Tuple[int, int]], budget: Optional[int] = None) -> Optional[str]:
    """Why an image declaring ``(width, height)`` may not be decoded (None: it may, or ``size`` is None)."""
    budget = budget or _budget
    if size is None or size[0] * size[1] <= budget:
        return None
    return (f"declares {size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.0f} MP), above the "
            f"{budget / 1e6:.0f} MP budget (--max-image-pixels): not decoded (a decompression bomb?)")


def check_file(path: str, budget: Optional[int] = None) -> None:
    """ValueError naming ``path`` when it declares more pixels than the budget (the Python API's guard)."""
    problem = size_problem(path, budget)
    if problem:
        raise ValueError(f"{path}: {problem}")


def declared_pixels(data):
    """TensorFlow ops: scalar string (an encoded image) -> int64 pixels its header declares (0: not found).

    PNG, GIF, BMP and WebP from the first 30 bytes; JPEG through ``tf.image.extract_jpeg_shape`` (headers only),
    run only on data with a JPEG signature and an end-of-image marker (:func:`common.io.serving.encoded_image_ok`
    first).
    """
    import tensorflow as tf

    head = tf.io.decode_raw(tf.strings.substr(data + b"\x00" * 32, 0, 32), tf.uint8)
    b = tf.cast(head, tf.int64)
    le16 = lambda i: b[i] + b[i + 1] * 256  # noqa: E731
    le24 = lambda i: le16(i) + b[i + 2] * 65536  # noqa: E731
    be32 = lambda i: ((b[i] * 256 + b[i + 1]) * 256 + b[i + 2]) * 256 + b[i + 3]  # noqa: E731
    starts = lambda prefix, at=0: tf.equal(tf.strings.substr(data + b"\x00" * 32, at, len(prefix)), prefix)  # noqa
    bmp_side = lambda i: tf.abs(tf.bitcast(tf.cast(le16(i) + le16(i + 2) * 65536, tf.uint32), tf.int32))  # noqa
    webp_lossless = le16(21) + le16(23) * 65536
    webp = starts(b"RIFF")
    candidates = [
        (starts(b"\x89PNG\r\n\x1a\n"), be32(16) * be32(20)),
        (tf.logical_or(starts(b"GIF87a"), starts(b"GIF89a")), le16(6) * le16(8)),
        (starts(b"BM"), tf.cast(bmp_side(18), tf.int64) * tf.cast(bmp_side(22), tf.int64)),
        (webp & starts(b"VP8X", 12), (le24(24) + 1) * (le24(27) + 1)),
        (webp & starts(b"VP8L", 12), (webp_lossless % 16384 + 1) * (webp_lossless // 16384 % 16384 + 1)),
        (webp & starts(b"VP8 ", 12), (le16(26) % 16384) * (le16(28) % 16384)),
    ]
    pixels = tf.constant(0, tf.int64)
    for condition, value in reversed(candidates):
        pixels = tf.where(condition, value, pixels)
    is_jpeg = starts(b"\xff\xd8\xff")
    jpeg = tf.cond(is_jpeg, lambda: tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)),
                   lambda: tf.constant(0, tf.int64))
    return tf.where(is_jpeg, jpeg, pixels)
