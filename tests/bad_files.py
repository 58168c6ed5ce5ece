"""A corpus of awkward image files, written by the tests that need it (both model families).

``bomb_png`` is a decompression bomb (a tiny file declaring 529 MP): refused by its header, never decoded.

``BAD`` files must be reported by name and skipped; ``ODD_BUT_GOOD`` files are unusual but valid
and must train, evaluate and infer like any other image.
"""
import io
import os

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noise_image(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(array).convert(mode)


def bad_files(size: int = 48) -> dict:
    """{file name: bytes} of files no decoder can use, with the reason the check must give."""
    jpeg = encode(noise_image(size, size), "JPEG", quality=90)
    return {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated JPEG"),
        "corrupt.jpg": (b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(1).integers(0, 255, 500, dtype=np.uint8)),
                        "truncated JPEG"),
        "empty.jpg": (b"", "empty file"),
        "notes.png": (b"these are my notes, not an image\n", "not a JPEG/PNG"),
        "cut.png": (encode(noise_image(size, size), "PNG")[:200], "truncated PNG"),
    }


def bomb_png(side: int = 23000) -> bytes:
    """A ~64 KB 1-bit gray PNG declaring ``side`` x ``side`` pixels (23000: 529 MP, 1.6 GB decoded as RGB): a
    decompression bomb, written row by row so the test never holds it decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor, parts = zlib.compressobj(9), []
    for _ in range(side // 100):
        parts.append(compressor.compress(row * 100))
    parts.append(compressor.compress(row * (side % 100)) + compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


BOMB_REASON = "above the 100 MP budget"


def odd_but_good_files(size: int = 48) -> dict:
    """{file name: bytes} of unusual but valid images."""
    return {
        "cmyk.jpg": encode(noise_image(size, size, 2, "CMYK"), "JPEG", quality=90),
        "gray.jpg": encode(noise_image(size, size, 3, "L"), "JPEG"),
        "rgba.png": encode(noise_image(size, size, 4, "RGBA"), "PNG"),
        "png_named.jpg": encode(noise_image(size, size, 5), "PNG"),
        "one_pixel.jpg": encode(noise_image(1, 1, 6), "JPEG"),
        "thin.png": encode(noise_image(size * 4, 2, 7), "PNG"),
    }


def write(folder: str, files: dict) -> list:
    """Writes ``{name: bytes or (bytes, reason)}`` into ``folder``; returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, data in files.items():
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data[0] if isinstance(data, tuple) else data)
        paths.append(path)
    return paths
