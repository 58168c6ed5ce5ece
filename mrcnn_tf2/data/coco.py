"""COCO instance annotations -> per-image records: boxes, classes, crowd flags, masks.

Shape glossary
  N     instances of one image (after dropping empty boxes)
  H, W  height and width of the image in pixels
  C     number of categories; contiguous classes are 1..C, 0 is the background

Conventions
  * Boxes are ``[N, 4] float32`` (ymin, xmin, ymax, xmax) in pixels with continuous
    coordinates, as in ``mrcnn_tf2.ops.box_ops``; COCO's ``[x, y, w, h]`` maps to
    ``(y, x, y + h, x + w)``.
  * Boxes are clipped to the image; boxes with no area, before or after clipping, are
    dropped (with their masks), and one summary line is logged per file.
  * Masks are decoded on demand (``CocoDataset.masks``) from polygons, compressed or
    uncompressed RLE; an instance without a segmentation gets its box as mask.
  * Checked once when loaded (``CocoDataset.report``, a :class:`common.io.data_check.DataReport`):
    an image whose file is missing, unusable or of another size than listed, and an
    annotation with an unknown image or category id, a non-finite or negative box, a
    polygon of fewer than 3 points or a mis-sized RLE are left out and named (by file and
    annotation id). ``CocoDataset.ground_truth()`` is the same cleaned set for COCO
    evaluation: what training drops, evaluation does not score.
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import os

import numpy as np
from pycocotools import mask as mask_utils

from common.io.data_check import CHECK_THREADS, DataReport, image_problem

_LOG = logging.getLogger(__name__)
_REQUIRED_KEYS = {
    "images": ("id", "file_name", "height", "width"),
    "annotations": ("image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}


def load_coco_json(path: str) -> dict:
    """Reads and validates a COCO instances file.

    Raises:
      FileNotFoundError: the file does not exist (the message names it).
      ValueError: not JSON, or a missing/ill-typed section or key (names the file).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    with open(path) as f:
        try:
            coco = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
    _validate(coco, path)
    return coco


def _validate(coco, path):
    """Checks sections, required keys and cross references; ValueError naming `path`."""
    if not isinstance(coco, dict):
        raise ValueError(f"{path}: expected a JSON object with images/annotations/categories.")
    for section, keys in _REQUIRED_KEYS.items():
        entries = coco.get(section)
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a list under '{section}', "
                             f"got {type(entries).__name__}.")
        for entry in entries:
            missing = [k for k in keys if k not in entry]
            if missing:
                raise ValueError(f"{path}: an entry of '{section}' lacks {missing}: "
                                 f"{str(entry)[:200]}")
    for name, ids in (("image", [i["id"] for i in coco["images"]]), ("category", [c["id"] for c in coco["categories"]])):
        if len(set(ids)) != len(ids):
            raise ValueError(f"{path}: duplicate {name} ids.")


def _finite_numbers(values, count=None) -> bool:
    try:
        array = np.asarray(values, np.float64).reshape(-1)
    except (TypeError, ValueError):
        return False
    return (count is None or array.size == count) and bool(np.all(np.isfinite(array)))


def annotation_problem(ann: dict, image: dict, category_ids) -> str:
    """Why annotation ``ann`` of ``image`` cannot be used ("" if it can).

    Zero-area and out-of-image boxes are not problems here: :func:`coco_boxes` drops them.
    """
    if ann["category_id"] not in category_ids:
        return f"unknown category id {ann['category_id']!r}"
    if not _finite_numbers(ann["bbox"], 4):
        return f"bbox {ann['bbox']!r} is not 4 finite numbers"
    if ann["bbox"][2] < 0 or ann["bbox"][3] < 0:
        return f"bbox {ann['bbox']!r} has a negative width or height"
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2 or not _finite_numbers(polygon):
                return f"polygon with fewer than 3 points or bad coordinates: {str(polygon)[:60]}"
    elif isinstance(segmentation, dict):
        if list(segmentation.get("size", [])) != [image["height"], image["width"]] or "counts" not in segmentation:
            return (f"RLE of size {segmentation.get('size')} on an image of size "
                    f"{[image['height'], image['width']]}")
    return ""


def _image_file_problem(path: str, image: dict) -> str:
    """Why the file of ``image`` cannot be used ("" if it can): missing, unusable, or not the listed size."""
    if not os.path.isfile(path):
        return "image file not found"
    why = image_problem(path)
    if why:
        return why
    from PIL import Image

    try:
        with Image.open(path) as opened:
            width, height = opened.size
    except (OSError, ValueError) as err:
        return f"cannot be read as an image ({err})"
    if (height, width) != (image["height"], image["width"]):
        return f"image is {width}x{height}, the annotations say {image['width']}x{image['height']}"
    return ""


def _with_segmentation(ann: dict) -> dict:
    """``ann``, with its box as polygon when it has no segmentation (the mask training uses too)."""
    if ann.get("segmentation"):
        return ann
    x, y, w, h = (float(v) for v in ann["bbox"])
    return {**ann, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}


def coco_boxes(bboxes, height, width):
    """COCO ``[x, y, w, h]`` -> clipped boxes and which of them to keep.

    Args:
      bboxes: ``[N, 4]`` float, COCO boxes in pixels.
      height, width: image size in pixels.

    Returns:
      (``[N, 4] float32`` (ymin, xmin, ymax, xmax) clipped to the image,
       ``[N] bool`` keep, ``{"zero_area", "outside_image", "clipped"}`` counts).
    """
    b = np.asarray(bboxes, np.float64).reshape(-1, 4)
    boxes = np.stack([b[:, 1], b[:, 0], b[:, 1] + b[:, 3], b[:, 0] + b[:, 2]], axis=1)
    limits = np.array([height, width, height, width], np.float64)
    clipped = np.clip(boxes, 0.0, limits)
    zero_area = (b[:, 2] <= 0) | (b[:, 3] <= 0)
    empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    outside = empty & ~zero_area
    keep = ~(zero_area | outside)
    counts = {"zero_area": int(zero_area.sum()), "outside_image": int(outside.sum()),
              "clipped": int((keep & np.any(clipped != boxes, axis=1)).sum())}
    return clipped.astype(np.float32), keep, counts


def _box_mask(box, height, width):
    """``[4]`` (ymin, xmin, ymax, xmax) -> ``[H, W] uint8`` with the rounded box filled."""
    mask = np.zeros((height, width), np.uint8)
    ymin, xmin, ymax, xmax = (int(round(float(v))) for v in box)
    mask[ymin:ymax, xmin:xmax] = 1
    return mask


def segmentation_to_mask(segmentation, height, width, box):
    """One COCO segmentation -> ``[H, W] uint8`` {0, 1}.

    Args:
      segmentation: polygons (list of flat xy lists), an uncompressed RLE
        (``counts`` a list) or a compressed RLE (``counts`` a string); None or
        degenerate polygons fall back to the box.
      height, width: image size in pixels.
      box: ``[4]`` (ymin, xmin, ymax, xmax) in pixels, used for the fallback.
    """
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6 and len(p) % 2 == 0]
        if not polygons:
            return _box_mask(box, height, width)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict):
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(f"RLE size {segmentation['size']} differs from the image "
                             f"size {[height, width]}.")
        rle = segmentation
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        return _box_mask(box, height, width)
    return mask_utils.decode(rle).astype(np.uint8)


class CocoDataset:
    """Images and instance annotations of one COCO file, in image-id order.

    Attributes:
      annotation_file, image_dir: as given.
      class_names: ``["background", *category names sorted by COCO id]``.
      category_ids: contiguous class index -> COCO category id (``[0, ...]``).
      num_classes: ``len(class_names)`` (background included).
      image_ids: sorted COCO image ids; ``record(i)`` describes ``image_ids[i]``.
      dropped: counts of boxes dropped or clipped ({"zero_area", "outside_image",
        "clipped"}).
    """

    def __init__(self, annotation_file: str, image_dir: str, check_files: bool = True):
        self.annotation_file, self.image_dir = annotation_file, image_dir
        coco = load_coco_json(annotation_file)
        self._categories = sorted(coco["categories"], key=lambda c: c["id"])
        self.class_names = ["background"] + [c["name"] for c in self._categories]
        self.category_ids = [0] + [c["id"] for c in self._categories]
        self.num_classes = len(self.class_names)
        self.report = DataReport(annotation_file)
        images = sorted(coco["images"], key=lambda image: image["id"])
        self._images = self._usable_images(images) if check_files else images
        self.image_ids = [image["id"] for image in self._images]
        self._instances, self.dropped = self._index_annotations(coco["annotations"], {i["id"] for i in images})
        self._log_summary()

    def __len__(self) -> int:
        return len(self._images)

    def _usable_images(self, images):
        """Images whose ``file_name`` stays inside the image folder (:func:`common.io.data_check.name_problem`,
        checked before any file is touched) and whose file exists, passes
        :func:`common.io.data_check.image_problem` and has the listed size."""
        from common.io.data_check import name_problem

        refused = {image["id"]: name_problem(image["file_name"]) for image in images}
        for image in images:
            if refused[image["id"]]:
                self.report.add(f"{self.annotation_file} image id {image['id']}",
                                f"{refused[image['id']]}; its annotations are left out")
        self.report.checked += len(images)
        images = [image for image in images if not refused[image["id"]]]
        paths = [os.path.join(self.image_dir, image["file_name"]) for image in images]
        with concurrent.futures.ThreadPoolExecutor(CHECK_THREADS) as pool:
            problems = list(pool.map(_image_file_problem, paths, images))
        for path, image, why in zip(paths, images, problems):
            if why:
                self.report.add(path, f"{why} (image id {image['id']}; its annotations are left out)")
        return [image for image, why in zip(images, problems) if not why]

    def _index_annotations(self, annotations, listed_ids):
        """-> ({image id: instance arrays}, summed drop counts); bad annotations go to the report."""
        per_image = {image_id: [] for image_id in self.image_ids}
        images = {image["id"]: image for image in self._images}
        known = set(self.category_ids[1:])
        self.report.checked += len(annotations)
        for ann in annotations:
            if ann["image_id"] not in listed_ids:
                self.report.add(self._where(ann), f"refers to image id {ann['image_id']!r}, which is not listed")
            elif ann["image_id"] in images:
                why = annotation_problem(ann, images[ann["image_id"]], known)
                if why:
                    self.report.add(self._where(ann, images[ann["image_id"]]), why)
                else:
                    per_image[ann["image_id"]].append(ann)
        class_of = {coco_id: i for i, coco_id in enumerate(self.category_ids) if i}
        totals = {"zero_area": 0, "outside_image": 0, "clipped": 0}
        instances = {}
        for image in self._images:
            instances[image["id"]], counts = _instances(per_image[image["id"]], image, class_of)
            totals = {k: totals[k] + counts[k] for k in totals}
        return instances, totals

    def _where(self, ann, image=None) -> str:
        name = f" ({image['file_name']})" if image else ""
        return f"{self.annotation_file} annotation {ann.get('id')}{name}"

    def ground_truth(self) -> dict:
        """The cleaned COCO dataset dict (kept images and the annotations training uses), for pycocotools."""
        annotations = [_with_segmentation(ann) for image_id in self.image_ids
                       for ann in self._instances[image_id]["annotations"]]
        return {"images": list(self._images), "annotations": annotations, "categories": list(self._categories)}

    def excluded_summary(self) -> str:
        """Ground-truth instances left out of training and evaluation, by reason (for the eval log)."""
        d = self.dropped
        bad = sum(1 for where, _ in self.report.problems if " annotation " in where)
        images = len(self.report) - bad
        return (f"{d['zero_area']} zero-area box(es), {d['outside_image']} box(es) outside the image, "
                f"{bad} unusable annotation(s), and the annotations of {images} unusable image(s)")

    def _log_summary(self):
        """One line: kept instances, dropped and clipped boxes."""
        kept = sum(len(v["classes"]) for v in self._instances.values())
        d = self.dropped
        level = logging.WARNING if any(d.values()) else logging.INFO
        _LOG.log(level, "%s: %d instances in %d images; dropped %d zero-area and %d "
                 "out-of-image boxes, clipped %d boxes to the image.",
                 self.annotation_file, kept, len(self), d["zero_area"], d["outside_image"],
                 d["clipped"])

    def image_path(self, index: int) -> str:
        """Path of image ``index``; FileNotFoundError naming it if it does not exist."""
        from common.io.data_check import name_problem

        image = self._images[index]
        refused = name_problem(image["file_name"])
        if refused:
            raise ValueError(f"{self.annotation_file}, image id {image['id']}: {refused}")
        path = os.path.join(self.image_dir, image["file_name"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Image file not found: {path} (image id {image['id']}, "
                                    f"listed in {self.annotation_file}).")
        return path

    def record(self, index: int, with_masks: bool = False) -> dict:
        """Annotations of image ``index`` (0 <= index < len(self)).

        Returns:
          dict with "path", "image_id", "height", "width", "boxes" ``[N, 4] float32``
          (ymin, xmin, ymax, xmax) pixels, "classes" ``[N] int32`` in 1..C,
          "is_crowd" ``[N] bool``, "areas" ``[N] float32`` (COCO area),
          "segmentations" (N raw COCO segmentations) and, with ``with_masks``,
          "masks" ``[N, H, W] uint8``.

        Raises:
          FileNotFoundError: the image file does not exist (names the path).
        """
        image = self._images[index]
        record = {"path": self.image_path(index), "image_id": image["id"],
                  "height": image["height"], "width": image["width"],
                  **{k: v.copy() for k, v in self._instances[image["id"]].items() if k != "annotations"}}
        if with_masks:
            record["masks"] = self.masks(index)
        return record

    def masks(self, index: int) -> np.ndarray:
        """Instance masks of image ``index``: ``[N, H, W] uint8`` {0, 1}."""
        image = self._images[index]
        height, width = image["height"], image["width"]
        instances = self._instances[image["id"]]
        masks = [segmentation_to_mask(seg, height, width, box)
                 for seg, box in zip(instances["segmentations"], instances["boxes"])]
        return np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)


def _instances(annotations, image, class_of):
    """Annotations of one image -> (kept instance arrays, drop counts)."""
    boxes, keep, counts = coco_boxes([a["bbox"] for a in annotations],
                                     image["height"], image["width"])
    kept = [a for a, k in zip(annotations, keep) if k]
    return {
        "annotations": kept,
        "boxes": boxes[keep],
        "classes": np.array([class_of[a["category_id"]] for a in kept], np.int32),
        "is_crowd": np.array([bool(a.get("iscrowd", 0)) for a in kept], bool),
        "areas": np.array([a.get("area", 0.0) for a in kept], np.float32),
        "segmentations": [a.get("segmentation") for a in kept],
    }, counts
