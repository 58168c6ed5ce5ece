"""YOLO segmentation (Ultralytics): ``images/<split>/<name>.jpg``, ``labels/<split>/<name>.txt`` with one line per
object, ``class x1 y1 x2 y2 ...`` (coordinates normalised by the image's width and height), and ``data.yaml``
naming the classes (``names: [a, b]`` or ``names: {0: a, 1: b}``). Without split folders everything is ``train``.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, List

from dataset.formats import Converted, Instance, Sample, image_size
from dataset.formats.coco_reader import iter_images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def class_names(src: str) -> List[str]:
    """``names`` of ``<src>/data.yaml`` (or ``dataset.yaml``) in class-index order."""
    import yaml

    for name in ("data.yaml", "dataset.yaml"):
        path = os.path.join(src, name)
        if os.path.isfile(path):
            with open(path) as handle:
                names = (yaml.safe_load(handle) or {}).get("names")
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names, key=int)]
            if isinstance(names, list):
                return [str(n) for n in names]
            raise ValueError(f"{path}: no 'names' list or mapping")
    raise FileNotFoundError(f"{src}: no data.yaml naming the classes")


def _instances(label_file: str, width: int, height: int, names: List[str], skipped: list) -> List[Instance]:
    instances = []
    with open(label_file) as handle:
        for number, line in enumerate(handle, 1):
            values = line.split()
            if not values:
                continue
            try:
                index, coords = int(values[0]), [float(v) for v in values[1:]]
            except ValueError:
                skipped.append((f"{label_file}:{number}", "not 'class x y x y ...' numbers"))
                continue
            if not 0 <= index < len(names) or len(coords) < 6 or len(coords) % 2:
                skipped.append((f"{label_file}:{number}", f"class {index} of {len(names)} or {len(coords)} coordinates"))
                continue
            polygon = [v * (width if i % 2 == 0 else height) for i, v in enumerate(coords)]
            instances.append(Instance(names[index], polygons=[polygon]))
    return instances


def read(src: str) -> Converted:
    """``images/<split>/`` + ``labels/<split>/`` (or ``images/`` + ``labels/``) of ``src``."""
    names, skipped = class_names(src), []
    splits: Dict[str, List[Sample]] = {}
    roots = sorted(d for d in glob.glob(os.path.join(src, "images", "*")) if os.path.isdir(d))
    for folder in roots or [os.path.join(src, "images")]:
        split = os.path.basename(folder) if roots else "train"
        split = "val" if split in ("valid", "validation") else split
        for path in sorted(p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(IMAGE_EXTENSIONS)):
            width, height = image_size(path)
            label_file = os.path.join(src, "labels", *(([os.path.basename(folder)]) if roots else []),
                                      os.path.splitext(os.path.basename(path))[0] + ".txt")
            instances = _instances(label_file, width, height, names, skipped) if os.path.isfile(label_file) else []
            splits.setdefault(split, []).append(Sample(os.path.basename(path), width, height, instances, path=path))
    return Converted(splits, names, skipped)


def write(annotation_file: str, image_dir: str, out: str, split: str = "train") -> None:
    """A polygon COCO set as ``out/images/<split>``, ``out/labels/<split>`` and ``out/data.yaml``."""
    import shutil

    names_written = None
    for folder in ("images", "labels"):
        os.makedirs(os.path.join(out, folder, split), exist_ok=True)
    for image, path, annotations, names in iter_images(annotation_file, image_dir):
        order = sorted(names)
        names_written = [names[i] for i in order]
        lines = []
        for ann in annotations:
            for polygon in ann["segmentation"]:
                coords = [v / (image["width"] if i % 2 == 0 else image["height"]) for i, v in enumerate(polygon)]
                lines.append(" ".join([str(order.index(ann["category_id"]))] + [f"{v:.6f}" for v in coords]))
        shutil.copyfile(path, os.path.join(out, "images", split, image["file_name"]))
        with open(os.path.join(out, "labels", split, os.path.splitext(image["file_name"])[0] + ".txt"), "w") as handle:
            handle.write("\n".join(lines) + ("\n" if lines else ""))
    with open(os.path.join(out, "data.yaml"), "w") as handle:
        handle.write("names:\n" + "".join(f"  - {name}\n" for name in names_written or []))
