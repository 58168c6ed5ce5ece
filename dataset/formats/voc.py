"""Pascal VOC instance segmentation: ``Annotations/<id>.xml`` (objects: name, difficult, box),
``SegmentationObject/<id>.png`` (palette PNG: pixel ``k`` = the ``k``-th object of the XML, 0 background,
255 the void band VOC draws along object boundaries), ``JPEGImages/<id>.jpg`` and
``ImageSets/Segmentation/{train,val}.txt``.

Void: each void pixel goes to whichever side it is nearer (grown from the objects and the background one pixel
layer at a time), so the object boundary falls where the band's middle is, not at its inner edge (a 2-pixel band
would otherwise shave ~6 % off a 30-pixel shape). ``difficult`` objects become ``iscrowd`` regions (COCO's way of
not scoring or sampling them). Images without a ``SegmentationObject`` mask are skipped and counted (VOC's
detection-only images).
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from typing import Dict, List

import numpy as np

from dataset.formats import Converted, Instance, Sample, decode_mask_png, image_size, ordered_classes
from dataset.formats.coco_reader import annotation_mask, iter_images

CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
           "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
VOID = 255
_MAX_VOID_WIDTH = 16  # layers grown into the void band


def _shifts(array: np.ndarray, fill) -> List[np.ndarray]:
    """The 4 neighbours of every pixel (``fill`` beyond the border)."""
    padded = np.pad(array, 1, constant_values=fill)
    return [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]


def assign_void(labels: np.ndarray) -> np.ndarray:
    """``[H, W]`` instance labels with ``VOID`` pixels given to the nearest side (ties: the most neighbours,
    then objects before background, so a band's corner pixels follow its edges)."""
    labels = labels.astype(np.int32).copy()
    present = [int(v) for v in np.unique(labels) if v not in (VOID, 0)] + [0]
    for _ in range(_MAX_VOID_WIDTH):
        void = labels == VOID
        if not void.any():
            break
        neighbours = _shifts(labels, VOID)
        votes = np.stack([sum((n == value).astype(np.int32) for n in neighbours) for value in present])
        best = np.asarray(present)[np.argmax(votes, axis=0)]
        reached = void & (votes.max(axis=0) > 0)
        if not reached.any():
            break
        labels[reached] = best[reached]
    labels[labels == VOID] = 0
    return labels


def _objects(xml_file: str) -> List[dict]:
    root = ElementTree.parse(xml_file).getroot()
    return [{"name": (obj.findtext("name") or "").strip(), "difficult": (obj.findtext("difficult") or "0").strip() == "1"}
            for obj in root.iter("object")]


def _split_ids(src: str) -> Dict[str, List[str]]:
    sets = os.path.join(src, "ImageSets", "Segmentation")
    splits = {}
    for split in ("train", "val"):
        path = os.path.join(sets, f"{split}.txt")
        if os.path.isfile(path):
            with open(path) as handle:
                splits[split] = [line.strip() for line in handle if line.strip()]
    if not splits:
        ids = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(src, "Annotations")) if f.endswith(".xml"))
        splits["train"] = ids
    return splits


def _sample(src: str, image_id: str, skipped: list):
    xml_file = os.path.join(src, "Annotations", f"{image_id}.xml")
    mask_file = os.path.join(src, "SegmentationObject", f"{image_id}.png")
    image_file = os.path.join(src, "JPEGImages", f"{image_id}.jpg")
    for path, what in ((xml_file, "annotation"), (image_file, "image"), (mask_file, "instance mask")):
        if not os.path.isfile(path):
            skipped.append((path, f"no {what} file (image {image_id} skipped)"))
            return None
    try:
        objects = _objects(xml_file)
    except ElementTree.ParseError as err:
        skipped.append((xml_file, f"not readable XML ({err})"))
        return None
    width, height = image_size(image_file)
    labels = decode_mask_png(mask_file)
    if labels.shape != (height, width):
        skipped.append((mask_file, f"{labels.shape[1]}x{labels.shape[0]} mask on a {width}x{height} image"))
        return None
    labels = assign_void(labels)
    instances = []
    for k, obj in enumerate(objects, 1):
        mask = (labels == k).astype(np.uint8)
        if not mask.any():
            skipped.append((xml_file, f"object {k} ({obj['name']}) has no pixels in {os.path.basename(mask_file)}"))
            continue
        instances.append(Instance(obj["name"], mask=mask, iscrowd=obj["difficult"]))
    return Sample(os.path.basename(image_file), width, height, instances, path=image_file)


def read(src: str) -> Converted:
    """The VOC root ``src`` (the folder holding ``Annotations/``), its train/val lists as splits."""
    skipped: list = []
    splits = {split: [s for s in (_sample(src, i, skipped) for i in ids) if s is not None]
              for split, ids in _split_ids(src).items()}
    samples = [s for split in splits.values() for s in split]
    used = ordered_classes(samples)
    return Converted(splits, [c for c in CLASSES if c in used] + [c for c in used if c not in CLASSES], skipped)


def _palette() -> List[int]:
    """VOC's colour map (256 entries)."""
    colours = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        colours += [r, g, b]
    return colours


def _void_band(labels: np.ndarray) -> np.ndarray:
    """Pixels on either side of every boundary between different labels (a 2-pixel band, as VOC draws)."""
    band = np.zeros(labels.shape, bool)
    for neighbour in _shifts(labels, -1):
        band |= (neighbour != labels) & (neighbour != -1)
    return band


def write(annotation_file: str, image_dir: str, out: str, split: str = "train") -> None:
    """A COCO set as a VOC root (``difficult`` = crowd; a void band around every object)."""
    import shutil

    from PIL import Image

    for folder in ("Annotations", "JPEGImages", "SegmentationObject", os.path.join("ImageSets", "Segmentation")):
        os.makedirs(os.path.join(out, folder), exist_ok=True)
    ids = []
    for image, path, annotations, names in iter_images(annotation_file, image_dir):
        image_id = os.path.splitext(image["file_name"])[0]
        ids.append(image_id)
        shutil.copyfile(path, os.path.join(out, "JPEGImages", f"{image_id}.jpg"))
        labels = np.zeros((image["height"], image["width"]), np.int32)
        objects = []
        for ann in annotations:
            mask = annotation_mask(ann, image["height"], image["width"]).astype(bool)
            if not mask.any():
                continue
            objects.append(ann)
            labels[mask] = len(objects)
        pixels = np.where(_void_band(labels), VOID, labels).astype(np.uint8)
        picture = Image.fromarray(pixels, mode="P")
        picture.putpalette(_palette())
        picture.save(os.path.join(out, "SegmentationObject", f"{image_id}.png"))
        xml = ["<annotation>", f"<filename>{image_id}.jpg</filename>",
               f"<size><width>{image['width']}</width><height>{image['height']}</height><depth>3</depth></size>"]
        for ann in objects:
            x, y, w, h = ann["bbox"]
            xml.append(f"<object><name>{names[ann['category_id']]}</name><difficult>{int(bool(ann.get('iscrowd')))}"
                       f"</difficult><bndbox><xmin>{x + 1:.0f}</xmin><ymin>{y + 1:.0f}</ymin><xmax>{x + w:.0f}</xmax>"
                       f"<ymax>{y + h:.0f}</ymax></bndbox></object>")
        with open(os.path.join(out, "Annotations", f"{image_id}.xml"), "w") as handle:
            handle.write("\n".join(xml + ["</annotation>"]))
    with open(os.path.join(out, "ImageSets", "Segmentation", f"{split}.txt"), "w") as handle:
        handle.write("\n".join(ids) + "\n")
