"""A :class:`dataset.formats.Converted` written as a COCO data set that ``main.py train --data-dir`` reads::

    <out>/annotations/instances_<split>.json
    <out>/<split>/<file_name>          (images hard-linked from the source, copied across file systems)

Polygons stay polygons (``bbox`` their extent); masks become compressed RLE (pycocotools, ``bbox`` its pixel
extent); ``area`` is the segmentation's pixel count, as COCO defines it. Images whose instance list is empty stay (negatives train the detector).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict, List

import numpy as np

from dataset.formats import Converted, Instance, Sample


def _segmentation(instance: Instance, height: int, width: int):
    """(segmentation, bbox [x, y, w, h], area) of an instance; None when it covers no pixel."""
    from pycocotools import mask as mask_utils

    if instance.polygons is not None:
        polygons = [[round(float(v), 2) for v in polygon] for polygon in instance.polygons if len(polygon) >= 6]
        if not polygons:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        segmentation = polygons
        xs = [v for polygon in polygons for v in polygon[0::2]]
        ys = [v for polygon in polygons for v in polygon[1::2]]
        box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    else:
        mask = np.asfortranarray(instance.mask.astype(np.uint8))
        if not mask.any():
            return None
        rle = mask_utils.encode(mask)
        segmentation = {"counts": rle["counts"].decode("ascii"), "size": [int(height), int(width)]}
        box = mask_utils.toBbox(rle)
    area = float(mask_utils.area(rle))
    if area <= 0:
        return None
    return segmentation, [round(float(v), 2) for v in box], area


def _place(sample: Sample, folder: str) -> None:
    """The sample's image at ``folder/file_name``: a hard link, else a copy, else its embedded bytes."""
    target = os.path.join(folder, sample.file_name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target):
        os.remove(target)
    if sample.data is not None:
        with open(target, "wb") as handle:
            handle.write(sample.data)
        return
    try:
        os.link(sample.path, target)
    except OSError:
        shutil.copyfile(sample.path, target)


def write_coco(converted: Converted, out: str) -> Dict[str, str]:
    """Writes every split of ``converted`` under ``out``; returns ``{split: annotation file}``."""
    categories = [{"id": i, "name": name, "supercategory": ""} for i, name in enumerate(converted.class_names, 1)]
    ids = {name: i for i, name in enumerate(converted.class_names, 1)}
    written = {}
    for split, samples in converted.splits.items():
        images: List[dict] = []
        annotations: List[dict] = []
        for image_id, sample in enumerate(samples, 1):
            _place(sample, os.path.join(out, split))
            images.append({"id": image_id, "file_name": sample.file_name, "height": sample.height,
                           "width": sample.width})
            for instance in sample.instances:
                fields = _segmentation(instance, sample.height, sample.width)
                if fields is None:
                    converted.skipped.append((f"{split}/{sample.file_name}", f"an empty {instance.label!r} instance"))
                    continue
                segmentation, bbox, area = fields
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[instance.label],
                                    "segmentation": segmentation, "bbox": bbox, "area": area,
                                    "iscrowd": int(instance.iscrowd)})
        path = os.path.join(out, "annotations", f"instances_{split}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            json.dump({"images": images, "annotations": annotations, "categories": categories}, handle)
        written[split] = path
    return written
