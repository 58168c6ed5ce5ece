"""Writes a small deterministic ImageFolder dataset of coloured shapes.

Each class is a (shape, colour) pair; with up to 10 classes every class has
its own shape *and* its own colour, so a small CNN separates them easily.
Images vary in shape size, position, rotation, colour jitter and a noisy
grey background. Output layout::

    <out>/train/<NN_colour_shape>/<NNNNN>.jpg   (some .png)
    <out>/val/<NN_colour_shape>/<NNNNN>.jpg

The same arguments give byte-identical files (PIL + numpy only).

    python -m dataset.make_synthetic_imagefolder --out /tmp/shapes --num-classes 10
"""
import argparse
import functools
import math
import os

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "plus", "ring",
          "diamond", "star", "stripes", "cross", "frame")
COLOURS = {
    "red": (220, 40, 40), "green": (40, 190, 60), "blue": (40, 80, 235),
    "yellow": (240, 220, 40), "magenta": (225, 50, 205), "cyan": (40, 215, 225),
    "orange": (250, 140, 20), "white": (250, 250, 250), "purple": (115, 35, 165),
    "black": (15, 15, 15),
}
SPLITS = (("train", 0), ("val", 1))
_SUPERSAMPLE = 4
_JPEG_QUALITY = 90
_SMALL_TILT = math.pi / 12  # keeps squares and diamonds apart


def class_spec(index):
    """Class `index` -> (shape, colour name); unique pairs for index < 100."""
    num_shapes, colour_names = len(SHAPES), list(COLOURS)
    if not 0 <= index < num_shapes * len(colour_names):
        raise ValueError(f"Received: class index={index}; at most "
                         f"{num_shapes * len(colour_names)} classes are supported.")
    colour = colour_names[(index + index // num_shapes) % len(colour_names)]
    return SHAPES[index % num_shapes], colour


def class_names(num_classes):
    """Folder names, sorted in class-index order: ['00_red_circle', ...]."""
    return [f"{i:02d}_{class_spec(i)[1]}_{class_spec(i)[0]}" for i in range(num_classes)]


def _polygon(cx, cy, radius, angle, vertices, inner=None):
    """Regular (star if `inner`) polygon vertices as [(x, y), ...]."""
    points, count = [], vertices * (2 if inner else 1)
    for k in range(count):
        r = radius * (inner if inner and k % 2 else 1.0)
        a = angle + 2 * math.pi * k / count
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def _bars(cx, cy, r, angle, width, count):
    """`count` parallel bars (as polygons) through a disc of radius r."""
    c, s = math.cos(angle), math.sin(angle)
    bars = []
    for k in range(count):
        off = (k - (count - 1) / 2) * (2 * r / count)
        corners = [(-r, off - width), (r, off - width), (r, off + width), (-r, off + width)]
        bars.append([(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners])
    return bars


def _disc(draw, cx, cy, r, angle, fill, hollow=False):
    """Filled disc, or a ring when `hollow`."""
    box = [cx - r, cy - r, cx + r, cy + r]
    if hollow:
        draw.ellipse(box, outline=fill, width=int(r * 0.35))
    else:
        draw.ellipse(box, fill=fill)


def _regular(draw, cx, cy, r, angle, fill, sides, turn=0.0, hollow=False, inner=None,
             max_tilt=math.pi):
    """Regular polygon (star if `inner`), filled or as a thick outline.

    The polygon is turned by `turn` plus a tilt in [-max_tilt, max_tilt).
    """
    tilt = angle % (2 * max_tilt) - max_tilt
    points = _polygon(cx, cy, r, turn + tilt, sides, inner)
    if hollow:
        draw.line(points + points[:1], fill=fill, width=int(r * 0.3), joint="curve")
    else:
        draw.polygon(points, fill=fill)


def _crossing_bars(draw, cx, cy, r, angle, fill, turn=0.0):
    """Two perpendicular bars ('+' or, with turn=pi/4, 'x'); tilt < 22.5 deg."""
    tilt = angle % (math.pi / 8) + turn
    for bar in _bars(cx, cy, r, tilt, r * 0.22, 1) + _bars(cx, cy, r, tilt + math.pi / 2, r * 0.22, 1):
        draw.polygon(bar, fill=fill)


def _stripes(draw, cx, cy, r, angle, fill):
    """Three parallel bars, tilted by less than 30 degrees."""
    for bar in _bars(cx, cy, r, angle % (math.pi / 6), r * 0.16, 3):
        draw.polygon(bar, fill=fill)


_DRAWERS = {
    "circle": _disc,
    "ring": functools.partial(_disc, hollow=True),
    "square": functools.partial(_regular, sides=4, turn=math.pi / 4, max_tilt=_SMALL_TILT),
    "frame": functools.partial(_regular, sides=4, turn=math.pi / 4, hollow=True,
                               max_tilt=_SMALL_TILT),
    "diamond": functools.partial(_regular, sides=4, max_tilt=_SMALL_TILT),
    "triangle": functools.partial(_regular, sides=3),
    "star": functools.partial(_regular, sides=5, inner=0.42),
    "plus": _crossing_bars,
    "cross": functools.partial(_crossing_bars, turn=math.pi / 4),
    "stripes": _stripes,
}


def _background(rng, size):
    """Noisy low-saturation background: [size, size, 3] uint8."""
    base = rng.uniform(70, 170) + rng.uniform(-15, 15, size=3)
    noise = rng.normal(0.0, 18.0, size=(size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def render_image(class_index, rng, image_size):
    """One example of class `class_index`: [S, S, 3] uint8 numpy array."""
    shape, colour = class_spec(class_index)
    big = image_size * _SUPERSAMPLE
    radius = rng.uniform(0.22, 0.38) * big
    # Centre in the middle 40% so eval's centre crop (S of S + 32) keeps the shape.
    cx, cy = rng.uniform(max(radius, 0.3 * big), min(big - radius, 0.7 * big), size=2)
    jitter = rng.integers(-25, 26, size=3)
    fill = tuple(int(v) for v in np.clip(np.array(COLOURS[colour]) + jitter, 0, 255))
    layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    _DRAWERS[shape](ImageDraw.Draw(layer), cx, cy, radius, rng.uniform(0, 2 * math.pi), fill)
    layer = layer.resize((image_size, image_size), Image.Resampling.LANCZOS)
    background = Image.fromarray(_background(rng, image_size)).convert("RGBA")
    return np.asarray(Image.alpha_composite(background, layer).convert("RGB"))


def _write(array, path_stem, as_png):
    """Saves [S, S, 3] uint8 as PNG or JPEG; returns the path."""
    path = path_stem + (".png" if as_png else ".jpg")
    image = Image.fromarray(array)
    if as_png:
        image.save(path, format="PNG")
    else:
        image.save(path, format="JPEG", quality=_JPEG_QUALITY)
    return path


def _write_split(out_dir, split, split_id, num_classes, per_class, image_size, seed,
                 png_every):
    """Writes one split; returns the number of images written."""
    for class_index, name in enumerate(class_names(num_classes)):
        class_dir = os.path.join(out_dir, split, name)
        os.makedirs(class_dir, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, split_id, class_index, i])
            as_png = png_every > 0 and i % png_every == png_every - 1
            _write(render_image(class_index, rng, image_size),
                   os.path.join(class_dir, f"{i:05d}"), as_png)
    return num_classes * per_class


def make_imagefolder(out_dir, num_classes=10, train_per_class=100, val_per_class=20,
                     image_size=64, seed=0, png_every=10):
    """Writes `<out_dir>/{train,val}/<class>/` images; returns {split: count}.

    Args:
      out_dir: output root (created if needed).
      num_classes: number of (shape, colour) classes, 1..100.
      train_per_class / val_per_class: images per class in each split.
      image_size: side of the square images in pixels.
      seed: integer seed; the same arguments give byte-identical files.
      png_every: every `png_every`-th image of a class is a PNG (0: none).
    """
    if num_classes < 1:
        raise ValueError(f"Received: num_classes={num_classes}; expected >= 1.")
    class_spec(num_classes - 1)
    per_split = {"train": train_per_class, "val": val_per_class}
    return {split: _write_split(out_dir, split, split_id, num_classes, per_split[split],
                                image_size, seed, png_every)
            for split, split_id in SPLITS}


def _parse_args(argv=None):
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png-every", type=int, default=10,
                        help="every N-th image per class is written as PNG (0: JPEG only)")
    return parser.parse_args(argv)


def main(argv=None):
    """CLI entry point."""
    args = _parse_args(argv)
    counts = make_imagefolder(args.out, args.num_classes, args.train_per_class,
                              args.val_per_class, args.image_size, args.seed, args.png_every)
    print(f"Wrote {counts['train']} train and {counts['val']} val images "
          f"({args.num_classes} classes, {args.image_size}x{args.image_size}) to "
          f"{os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
