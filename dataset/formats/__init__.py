"""Annotation formats people label in, read into one in-memory form and written as COCO instance JSON.

Each format module (:mod:`labelme`, :mod:`voc`, :mod:`masks`, :mod:`yolo`) has ``read(src) -> Converted``
(the converter, :mod:`dataset.convert`) and ``write(coco_json, image_dir, out)`` (the same data in that format,
for the demo, the walkthrough and the round-trip tests). Shapes:

  Instance   one object: class name, ``polygons`` (flat ``[x0, y0, x1, y1, ...]`` lists, pixels) *or* ``mask``
             (``[H, W] uint8`` 0/1), ``iscrowd``
  Sample     one image: where its pixels are (a file, or the bytes embedded in a LabelMe file), the file name to
             write, its size and instances
  Converted  the samples of each split, the class names in category-id order, and the entries skipped (named)

Class names become category ids 1..N in a stable order: the format's own list where it has one (YOLO's
``data.yaml``, VOC's 20 classes first), else sorted; the converter prints the mapping.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


@dataclasses.dataclass
class Instance:
    label: str
    polygons: Optional[List[List[float]]] = None
    mask: Optional[np.ndarray] = None
    iscrowd: bool = False


@dataclasses.dataclass
class Sample:
    file_name: str
    width: int
    height: int
    instances: List[Instance]
    path: Optional[str] = None  # the image file to copy
    data: Optional[bytes] = None  # or its encoded bytes (LabelMe imageData)


@dataclasses.dataclass
class Converted:
    splits: Dict[str, List[Sample]]
    class_names: List[str]
    skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)  # (where, why)


def ordered_classes(samples: Sequence[Sample], known: Sequence[str] = ()) -> List[str]:
    """``known`` names first (in their order, those used or not), then the other used names sorted."""
    used = {instance.label for sample in samples for instance in sample.instances}
    return list(known) + sorted(used - set(known))


def inside(root: str, path: str) -> bool:
    """Does ``path`` resolve inside the folder ``root`` (links followed)? Source files may point with ``..``
    within the source folder (LabelMe writes ``../images/x.jpg``), never outside it."""
    root, path = os.path.realpath(root), os.path.realpath(path)
    return os.path.commonpath([root, path]) == root


def image_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` of an image file, from its header."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def decode_mask_png(path: str) -> np.ndarray:
    """A PNG's pixel values (palette indices for palette PNGs): ``[H, W]`` uint8."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image if image.mode in ("P", "L", "1") else image.convert("L")).astype(np.uint8)
