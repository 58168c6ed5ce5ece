"""``<workspace>/eval/worst/``: the validation images a run got most wrong, as captioned PNG tiles.

Each family scores every validation image (classification: the probability of the true class; detection: the
share of ground-truth objects found, see :func:`mrcnn_tf2.evaluation.image_score`), keeps the lowest
:data:`WORST_COUNT` and draws them here with :func:`caption` / :func:`side_by_side`; ``worst.csv`` lists them
(rank, file, score, ...). Every validation replaces the folder's pictures, so it always shows the last one.
"""
from __future__ import annotations

import csv
import glob
import os
from typing import List, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORST_COUNT = 12
THUMBNAIL = 320  # longest side of a tile's picture at most, pixels
SMALLEST = 160  # smaller pictures are enlarged to this longest side (pixel-doubled, so still sharp)
_LINE_HEIGHT = 14
_BACKGROUND = (255, 255, 255)


def prepare(folder: str) -> str:
    """``<folder>/worst`` created and emptied of the previous validation's tiles; returns its path."""
    out = os.path.join(folder, "worst")
    os.makedirs(out, exist_ok=True)
    for stale in glob.glob(os.path.join(out, "*.png")) + glob.glob(os.path.join(out, "worst.csv")):
        os.remove(stale)
    return out


def lowest(scores: np.ndarray, count: int = WORST_COUNT) -> np.ndarray:
    """Indices of the ``count`` lowest ``scores [N]``, lowest first (ties: first seen first)."""
    return np.argsort(np.asarray(scores, np.float64), kind="stable")[:count]


def thumbnail(picture: Image.Image, size: int = THUMBNAIL) -> Image.Image:
    """An RGB copy whose longest side is at most ``size`` pixels, small pictures enlarged by a whole factor
    to about :data:`SMALLEST` (aspect kept)."""
    copy = picture.convert("RGB")
    longest = max(copy.size)
    if longest < SMALLEST:
        factor = SMALLEST // longest
        return copy.resize((copy.width * factor, copy.height * factor), Image.NEAREST) if factor > 1 else copy
    copy.thumbnail((size, size))
    return copy


def caption(picture: Image.Image, lines: Sequence[str]) -> Image.Image:
    """``picture`` above a white band holding ``lines`` of text."""
    band = _LINE_HEIGHT * len(lines) + 6
    width = max(picture.width, 8 + 6 * max((len(line) for line in lines), default=0))
    tile = Image.new("RGB", (width, picture.height + band), _BACKGROUND)
    tile.paste(picture, (0, 0))
    draw, font = ImageDraw.Draw(tile), ImageFont.load_default()
    for row, line in enumerate(lines):
        draw.text((4, picture.height + 3 + row * _LINE_HEIGHT), line, fill=(0, 0, 0), font=font)
    return tile


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 6) -> Image.Image:
    """``left`` and ``right`` next to each other on white, tops aligned."""
    tile = Image.new("RGB", (left.width + gap + right.width, max(left.height, right.height)), _BACKGROUND)
    tile.paste(left, (0, 0))
    tile.paste(right, (left.width + gap, 0))
    return tile


def save(picture: Image.Image, folder: str, rank: int, name: str) -> str:
    """Writes ``<folder>/<rank:02d>_<name>.png`` (name reduced to safe characters); returns the path."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in os.path.splitext(os.path.basename(name))[0])
    path = os.path.join(folder, f"{rank:02d}_{safe[:60]}.png")
    picture.save(path, format="PNG")
    return path


def write_table(folder: str, header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """``<folder>/worst.csv``; returns its path."""
    path = os.path.join(folder, "worst.csv")
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([tuple(header), *map(tuple, rows)])
    return path


def tiles(folder: str) -> List[str]:
    """The tiles of ``<folder>/worst`` in rank order (what the report embeds)."""
    return sorted(glob.glob(os.path.join(folder, "worst", "*.png")))
