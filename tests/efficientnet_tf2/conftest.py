"""Shared fixtures: tiny images and a tiny ImageFolder with awkward files."""
import io
import os

import numpy as np
import pytest
from PIL import Image

def encode(image, fmt, **kwargs):
    """PIL image -> encoded bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def solid(colour, size=(40, 30), mode="RGB"):
    """A PIL image of one colour; size is (width, height)."""
    return Image.new(mode, size, colour)


@pytest.fixture
def rgb_image():
    """[37, 53, 3] uint8 numpy array of noise (non-square on purpose)."""
    return np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _special_files():
    """{relative path: bytes} covering formats, colour modes and damage."""
    good_jpeg = encode(solid((200, 30, 40)), "JPEG", quality=95)
    return {
        "train/ant/rgb.jpg": good_jpeg,
        "train/ant/UPPER.JPEG": encode(solid((210, 20, 30)), "JPEG"),
        "train/ant/truncated.jpg": good_jpeg[: len(good_jpeg) // 2],
        "train/ant/notes.txt": b"not an image, ignored by extension",
        "train/bee/gray.jpg": encode(solid(128, mode="L"), "JPEG"),
        "train/bee/cmyk.jpg": encode(solid((200, 30, 40)).convert("CMYK"), "JPEG", quality=95),
        "train/bee/corrupt.png": b"\x89PNG\r\n\x1a\n this is not really a png",
        "train/cat/rgba.png": encode(solid((10, 200, 30, 128), mode="RGBA"), "PNG"),
        "train/cat/plain.png": encode(solid((10, 20, 230)), "PNG"),
        "train/cat/nested/deep.jpg": good_jpeg,
        "val/ant/a.jpg": good_jpeg,
        "val/bee/b.png": encode(solid((1, 2, 3), size=(30, 40)), "PNG"),
        "val/cat/c.jpg": encode(solid((9, 9, 200), size=(64, 20)), "JPEG"),
        "val/cat/d.jpg": good_jpeg,
        "val/cat/broken.jpg": b"garbage",
    }


@pytest.fixture(scope="session")
def imagefolder(tmp_path_factory):
    """Root of a tiny ImageFolder (3 classes) with special-case files."""
    root = tmp_path_factory.mktemp("imagefolder")
    for rel, data in _special_files().items():
        _write(os.path.join(root, rel), data)
    return str(root)
