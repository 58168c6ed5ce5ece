"""LabelMe: one JSON file per image (``shapes`` + ``imagePath``, optionally the image itself in ``imageData``).

Read: ``polygon`` shapes as they are; ``rectangle`` (two corners) as a 4-point polygon; ``circle`` (centre and a
point on it) as a 32-point polygon; shapes sharing a ``group_id`` and a label are one instance (several
polygons); other shape types (``line``, ``point``, ``linestrip``) are skipped and named. The image is
``imageData`` (base64) when present, else ``imagePath`` relative to the JSON file, which must stay inside the
source folder.
"""
from __future__ import annotations

import base64
import glob
import io
import json
import math
import os
import shutil
from typing import Dict, List, Tuple

from dataset.formats import Converted, Instance, Sample, inside, ordered_classes
from dataset.formats.coco_reader import iter_images

CIRCLE_POINTS = 32
SUPPORTED = ("polygon", "rectangle", "circle")


def _polygon(shape: dict) -> List[float]:
    """A LabelMe shape's outline as a flat xy list (pixels)."""
    points = [(float(x), float(y)) for x, y in shape["points"]]
    kind = shape.get("shape_type") or "polygon"
    if kind == "rectangle":
        (x0, y0), (x1, y1) = points[:2]
        points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    elif kind == "circle":
        (cx, cy), (px, py) = points[:2]
        radius = math.hypot(px - cx, py - cy)
        points = [(cx + radius * math.cos(2 * math.pi * k / CIRCLE_POINTS),
                   cy + radius * math.sin(2 * math.pi * k / CIRCLE_POINTS)) for k in range(CIRCLE_POINTS)]
    return [v for point in points for v in point]


def _instances(record: dict, where: str, skipped: list) -> List[Instance]:
    """Shapes -> instances (group ids joined)."""
    groups: Dict[Tuple[str, object], Instance] = {}
    instances: List[Instance] = []
    for shape in record.get("shapes", []):
        kind = shape.get("shape_type") or "polygon"
        if kind not in SUPPORTED:
            skipped.append((where, f"{kind} shape {shape.get('label')!r} (not an area: skipped)"))
            continue
        polygon = _polygon(shape)
        if len(polygon) < 6:
            skipped.append((where, f"{kind} {shape.get('label')!r} with fewer than 3 points"))
            continue
        label, group = str(shape["label"]), shape.get("group_id")
        if group is not None and (label, group) in groups:
            groups[(label, group)].polygons.append(polygon)
            continue
        instance = Instance(label, polygons=[polygon])
        instances.append(instance)
        if group is not None:
            groups[(label, group)] = instance
    return instances


def _sample(path: str, src: str, skipped: list):
    """One LabelMe file -> a Sample (None: skipped, named)."""
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (OSError, ValueError) as err:
        skipped.append((path, f"not a readable LabelMe JSON file ({err})"))
        return None
    if not isinstance(record, dict) or "shapes" not in record:
        skipped.append((path, "not a LabelMe file (no 'shapes')"))
        return None
    stem = os.path.splitext(os.path.relpath(path, src))[0]
    data = base64.b64decode(record["imageData"]) if record.get("imageData") else None
    image_path = os.path.join(os.path.dirname(path), str(record.get("imagePath") or ""))
    if data is None and not (record.get("imagePath") and inside(src, image_path) and os.path.isfile(image_path)):
        skipped.append((path, f"its image {record.get('imagePath')!r} is not in {src} and not embedded"))
        return None
    if data is not None:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            width, height, ext = image.width, image.height, "." + (image.format or "png").lower().replace("jpeg", "jpg")
    else:
        from dataset.formats import image_size

        (width, height), ext = image_size(image_path), os.path.splitext(image_path)[1]
    return Sample(stem.replace(os.sep, "_") + ext, width, height, _instances(record, path, skipped),
                  path=None if data is not None else image_path, data=data)


def read(src: str) -> Converted:
    """Every ``*.json`` under ``src`` (recursive) as split ``train``."""
    skipped: list = []
    samples = [s for s in (_sample(p, src, skipped) for p in sorted(glob.glob(os.path.join(src, "**", "*.json"),
                                                                           recursive=True))) if s is not None]
    return Converted({"train": samples}, ordered_classes(samples), skipped)


def write(annotation_file: str, image_dir: str, out: str, embed_every: int = 0) -> None:
    """A COCO set whose segmentations are polygons as LabelMe files in ``out`` (images beside them; every
    ``embed_every``-th image embedded as ``imageData`` instead). Crowd regions become one group per region."""
    os.makedirs(out, exist_ok=True)
    for index, (image, path, annotations, names) in enumerate(iter_images(annotation_file, image_dir)):
        shapes = []
        for group, ann in enumerate(annotations):
            if not isinstance(ann["segmentation"], list):
                raise ValueError(f"{annotation_file}: annotation {ann['id']} is not a polygon (LabelMe holds polygons)")
            for polygon in ann["segmentation"]:
                shapes.append({"label": names[ann["category_id"]], "points": [[polygon[i], polygon[i + 1]]
                                                                             for i in range(0, len(polygon), 2)],
                               "group_id": group if len(ann["segmentation"]) > 1 else None,
                               "shape_type": "polygon", "flags": {}})
        record = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image["file_name"],
                  "imageData": None, "imageHeight": image["height"], "imageWidth": image["width"]}
        if embed_every and index % embed_every == embed_every - 1:
            with open(path, "rb") as handle:
                record["imageData"] = base64.b64encode(handle.read()).decode("ascii")
            record["imagePath"] = "not_here/" + image["file_name"]
        else:
            shutil.copyfile(path, os.path.join(out, image["file_name"]))
        with open(os.path.join(out, os.path.splitext(image["file_name"])[0] + ".json"), "w") as handle:
            json.dump(record, handle)
