"""Folders of per-instance binary masks: ``images/<name>.jpg`` and ``masks/<name>/<class>_<k>.png`` (one PNG per
object, non-zero = the object; ``<class>`` may itself contain ``_``: the last ``_<k>`` is the instance number).
"""
from __future__ import annotations

import glob
import os

import numpy as np

from dataset.formats import Converted, Instance, Sample, decode_mask_png, image_size, ordered_classes
from dataset.formats.coco_reader import annotation_mask, iter_images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def read(src: str) -> Converted:
    """``src/images`` with ``src/masks/<image stem>/`` as split ``train``."""
    samples, skipped = [], []
    for path in sorted(p for p in glob.glob(os.path.join(src, "images", "*")) if p.lower().endswith(IMAGE_EXTENSIONS)):
        width, height = image_size(path)
        instances = []
        for mask_file in sorted(glob.glob(os.path.join(src, "masks", os.path.splitext(os.path.basename(path))[0],
                                                       "*.png"))):
            label, _, number = os.path.splitext(os.path.basename(mask_file))[0].rpartition("_")
            if not label or not number.isdigit():
                skipped.append((mask_file, "not named <class>_<k>.png"))
                continue
            mask = decode_mask_png(mask_file)
            if mask.shape != (height, width):
                skipped.append((mask_file, f"{mask.shape[1]}x{mask.shape[0]} mask on a {width}x{height} image"))
                continue
            instances.append(Instance(label, mask=(mask > 0).astype(np.uint8)))
        samples.append(Sample(os.path.basename(path), width, height, instances, path=path))
    return Converted({"train": samples}, ordered_classes(samples), skipped)


def write(annotation_file: str, image_dir: str, out: str) -> None:
    """A COCO set as ``out/images`` + ``out/masks/<stem>/<class>_<k>.png`` (crowd regions left out)."""
    import shutil

    from PIL import Image

    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    for image, path, annotations, names in iter_images(annotation_file, image_dir):
        shutil.copyfile(path, os.path.join(out, "images", image["file_name"]))
        folder = os.path.join(out, "masks", os.path.splitext(image["file_name"])[0])
        os.makedirs(folder, exist_ok=True)
        for k, ann in enumerate(a for a in annotations if not a.get("iscrowd")):
            mask = annotation_mask(ann, image["height"], image["width"]) * 255
            Image.fromarray(mask.astype(np.uint8)).save(os.path.join(folder, f"{names[ann['category_id']]}_{k}.png"))
