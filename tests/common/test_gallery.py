"""The ``worst/`` tiles (common.io.gallery): ranking, thumbnails, captions, files."""
import os

import numpy as np
from PIL import Image

from common.io import gallery


def test_lowest_ranks_ascending_and_stable():
    assert gallery.lowest(np.array([0.5, 0.1, 0.9, 0.1]), 3).tolist() == [1, 3, 0]


def test_thumbnail_shrinks_big_and_enlarges_small_pictures():
    big = gallery.thumbnail(Image.new("RGB", (1000, 500)))
    small = gallery.thumbnail(Image.new("L", (32, 16)))
    assert big.size == (gallery.THUMBNAIL, gallery.THUMBNAIL // 2)
    assert small.size == (160, 80) and small.mode == "RGB"


def test_tiles_replace_the_previous_validation_and_open(tmp_path):
    folder = gallery.prepare(str(tmp_path))
    old = gallery.save(Image.new("RGB", (8, 8)), folder, 1, "old.jpg")
    folder = gallery.prepare(str(tmp_path))
    assert not os.path.exists(old)
    captioned = gallery.caption(Image.new("RGB", (40, 30)), ["#1 a", "true: cat (0.10)"])
    assert captioned.height == 30 + 2 * 14 + 6 and captioned.width >= 40  # widened to fit the text
    tile = gallery.side_by_side(captioned, Image.new("RGB", (50, 20)))
    path = gallery.save(tile, folder, 2, "../../x y.jpg")  # a hostile name stays inside worst/
    assert os.path.dirname(path) == folder and os.path.basename(path) == "02_x_y.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (captioned.width + 6 + 50, captioned.height)
    assert gallery.tiles(str(tmp_path)) == [path]
