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
  * The JSON is streamed into columns of arrays (:mod:`mrcnn_tf2.data.coco_columns`), never held whole as
    Python objects; with a ``cache_dir`` (the workspace) the columns and the image files' verdicts are kept,
    so a restart starts in seconds.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np
from pycocotools import mask as mask_utils

from common.io.check_manifest import CheckManifest
from common.io.data_check import CHECK_THREADS, DataReport, inspect_image, name_problem
from mrcnn_tf2.data import coco_columns

_LOG = logging.getLogger(__name__)


def _inspect_with_size(path: str):
    """:func:`common.io.data_check.inspect_image`, with PIL's size where the header declared none."""
    if not os.path.isfile(path):
        return "image file not found", None
    problem, size = inspect_image(path)
    if problem is None and size is None:
        from PIL import Image

        try:
            with Image.open(path) as opened:
                size = opened.size
        except (OSError, ValueError) as err:
            return f"cannot be read as an image ({err})", None
    return problem, size


def _file_problem(verdict, height: int, width: int) -> str:
    """Why an image file with ``verdict`` (``(problem, (w, h))``) cannot be used for a listed ``height x width``."""
    problem, size = verdict
    if problem:
        return problem
    if size is not None and tuple(size) != (width, height):
        return f"image is {size[0]}x{size[1]}, the annotations say {width}x{height}"
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
      height, width: image size in pixels: scalars, or ``[N]`` (each box's image).

    Returns:
      (``[N, 4] float32`` (ymin, xmin, ymax, xmax) clipped to the image,
       ``[N] bool`` keep, ``{"zero_area", "outside_image", "clipped"}`` counts).
    """
    b = np.asarray(bboxes, np.float64).reshape(-1, 4)
    boxes = np.stack([b[:, 1], b[:, 0], b[:, 1] + b[:, 3], b[:, 0] + b[:, 2]], axis=1)
    height, width = np.broadcast_to(height, len(b)), np.broadcast_to(width, len(b))
    limits = np.stack([height, width, height, width], axis=1).astype(np.float64)
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

    ``cache_dir`` (the workspace): the parsed annotations (:mod:`mrcnn_tf2.data.coco_columns`) and the image
    files' verdicts (:class:`common.io.check_manifest.CheckManifest`) are kept there, so a restart neither
    parses the JSON nor re-checks unchanged files.
    """

    def __init__(self, annotation_file: str, image_dir: str, check_files: bool = True,
                 cache_dir: Optional[str] = None):
        self.annotation_file, self.image_dir = annotation_file, image_dir
        self._columns = columns = coco_columns.load(annotation_file, cache_dir)
        self._categories = columns.categories
        self.class_names = ["background"] + [c["name"] for c in self._categories]
        self.category_ids = [0] + [c["id"] for c in self._categories]
        self.num_classes = len(self.class_names)
        self.report = DataReport(annotation_file)
        self._rows = self._usable_images(check_files, cache_dir)  # [len] rows of the columns' images
        self.image_ids = columns.image_ids[self._rows].tolist()
        self._index_annotations()
        self._log_summary()

    def __len__(self) -> int:
        return len(self._rows)

    def _usable_images(self, check_files: bool, cache_dir: Optional[str]) -> np.ndarray:
        """Rows of the images whose ``file_name`` stays inside the image folder (:func:`name_problem`, checked
        before any file is touched) and, with ``check_files``, whose file passes
        :func:`common.io.data_check.inspect_image` and has the listed size."""
        columns = self._columns
        count = len(columns.image_ids)
        names = [columns.name(row) for row in range(count)]
        refused = [name_problem(name) for name in names]
        for row in np.flatnonzero([bool(r) for r in refused]):
            self.report.add(f"{self.annotation_file} image id {columns.image_ids[row]}",
                            f"{refused[row]}; its annotations are left out")
        self.report.checked += count
        rows = [row for row in range(count) if not refused[row]]
        if not check_files:
            return np.array(rows, np.int64)
        paths = [os.path.join(self.image_dir, names[row]) for row in rows]
        manifest = CheckManifest.for_source(cache_dir, self.image_dir)
        verdicts = manifest.check(paths, _inspect_with_size, threads=CHECK_THREADS)
        if manifest.reused:
            _LOG.info("%s: %d image verdicts reused from %s, %d files checked", self.annotation_file,
                      manifest.reused, manifest.path, manifest.checked)
        usable = []
        for row, path, verdict in zip(rows, paths, verdicts):
            why = _file_problem(verdict, int(columns.heights[row]), int(columns.widths[row]))
            if why:
                self.report.add(path, f"{why} (image id {columns.image_ids[row]}; its annotations are left out)")
            else:
                usable.append(row)
        return np.array(usable, np.int64)

    def _index_annotations(self) -> None:
        """Kept annotations of the usable images (``_ann``: rows into the columns, ``_starts``: per image),
        their clipped boxes and classes; the unusable annotations of usable or unlisted images reported."""
        columns = self._columns
        usable_ids = set(self.image_ids)
        names = {int(columns.image_ids[row]): columns.name(row) for row in self._rows}
        self.report.checked += len(columns.ann_ids) + len(columns.problems)
        for ann_id, image_id, why in columns.problems:
            if image_id is None or image_id in usable_ids:
                name = f" ({names[image_id]})" if image_id is not None else ""
                self.report.add(f"{self.annotation_file} annotation {ann_id}{name}", why)
        ids = np.asarray(self.image_ids, np.int64)
        rows = np.flatnonzero(np.isin(columns.ann_images, ids))
        slot = np.searchsorted(ids, columns.ann_images[rows])
        heights, widths = columns.heights[self._rows][slot], columns.widths[self._rows][slot]
        boxes, keep, self.dropped = coco_boxes(columns.bboxes[rows], heights, widths)
        self._ann, self._boxes = rows[keep], boxes[keep]
        self._starts = np.searchsorted(slot[keep], np.arange(len(ids) + 1))
        class_of = np.asarray(self.category_ids[1:], np.int64)
        self._classes = (np.searchsorted(class_of, columns.ann_categories[self._ann]) + 1).astype(np.int32)

    def ground_truth(self) -> dict:
        """The cleaned COCO dataset dict (kept images and the annotations training uses), for pycocotools."""
        columns = self._columns
        images = [{"id": int(columns.image_ids[row]), "file_name": columns.name(row),
                   "height": int(columns.heights[row]), "width": int(columns.widths[row])} for row in self._rows]
        annotations = []
        for row in self._ann:
            bbox = columns.bboxes[row].tolist()
            area = float(columns.areas[row])
            annotations.append(_with_segmentation({
                "id": int(columns.ann_ids[row]), "image_id": int(columns.ann_images[row]),
                "category_id": int(columns.ann_categories[row]), "iscrowd": int(columns.crowd[row]),
                "area": bbox[2] * bbox[3] if np.isnan(area) else area, "bbox": bbox,
                "segmentation": columns.segmentation(row)}))
        return {"images": images, "annotations": annotations, "categories": list(self._categories)}

    def excluded_summary(self) -> str:
        """Ground-truth instances left out of training and evaluation, by reason (for the eval log)."""
        d = self.dropped
        bad = sum(1 for where, _ in self.report.problems if " annotation " in where)
        images = len(self.report) - bad
        return (f"{d['zero_area']} zero-area box(es), {d['outside_image']} box(es) outside the image, "
                f"{bad} unusable annotation(s), and the annotations of {images} unusable image(s)")

    def _log_summary(self):
        """One line: kept instances, dropped and clipped boxes."""
        d = self.dropped
        level = logging.WARNING if any(d.values()) else logging.INFO
        _LOG.log(level, "%s: %d instances in %d images; dropped %d zero-area and %d "
                 "out-of-image boxes, clipped %d boxes to the image.",
                 self.annotation_file, len(self._ann), len(self), d["zero_area"], d["outside_image"],
                 d["clipped"])

    def image_path(self, index: int) -> str:
        """Path of image ``index``; FileNotFoundError naming it if it does not exist."""
        row, columns = self._rows[index], self._columns
        name = columns.name(row)
        refused = name_problem(name)
        if refused:
            raise ValueError(f"{self.annotation_file}, image id {columns.image_ids[row]}: {refused}")
        path = os.path.join(self.image_dir, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Image file not found: {path} (image id {columns.image_ids[row]}, "
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
        row, columns = self._rows[index], self._columns
        start, end = self._starts[index], self._starts[index + 1]
        rows = self._ann[start:end]
        areas = columns.areas[rows]
        record = {"path": self.image_path(index), "image_id": int(columns.image_ids[row]),
                  "height": int(columns.heights[row]), "width": int(columns.widths[row]),
                  "boxes": self._boxes[start:end].copy(), "classes": self._classes[start:end].copy(),
                  "is_crowd": columns.crowd[rows].copy(),
                  "areas": np.where(np.isnan(areas), 0.0, areas).astype(np.float32),
                  "segmentations": [columns.segmentation(r) for r in rows]}
        if with_masks:
            record["masks"] = self.masks(index)
        return record

    def masks(self, index: int) -> np.ndarray:
        """Instance masks of image ``index``: ``[N, H, W] uint8`` {0, 1}."""
        row, columns = self._rows[index], self._columns
        height, width = int(columns.heights[row]), int(columns.widths[row])
        start, end = self._starts[index], self._starts[index + 1]
        masks = [segmentation_to_mask(columns.segmentation(r), height, width, box)
                 for r, box in zip(self._ann[start:end], self._boxes[start:end])]
        return np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)
