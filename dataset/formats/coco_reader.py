"""A COCO instance file read per image (for the format writers and the round-trip comparison)."""
from __future__ import annotations

import json
import os
from typing import Dict, Iterator, List, Tuple

import numpy as np


def read_coco(annotation_file: str) -> Tuple[List[dict], Dict[int, List[dict]], Dict[int, str]]:
    """``(images sorted by id, {image id: annotations}, {category id: name})``."""
    with open(annotation_file) as handle:
        coco = json.load(handle)
    per_image: Dict[int, List[dict]] = {image["id"]: [] for image in coco["images"]}
    for ann in coco["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    return sorted(coco["images"], key=lambda image: image["id"]), per_image, names


def annotation_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """``[H, W]`` uint8 0/1 mask of a COCO annotation (polygons, RLE or uncompressed RLE)."""
    from pycocotools import mask as mask_utils

    segmentation = ann["segmentation"]
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(np.uint8)


def iter_images(annotation_file: str, image_dir: str) -> Iterator[Tuple[dict, str, List[dict], Dict[int, str]]]:
    """``(image dict, image path, its annotations, category names)`` per image."""
    images, per_image, names = read_coco(annotation_file)
    for image in images:
        yield image, os.path.join(image_dir, image["file_name"]), per_image[image["id"]], names
