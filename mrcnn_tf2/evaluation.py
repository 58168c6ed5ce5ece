"""COCO evaluation of Mask R-CNN detections: result entries, COCOeval metrics, a table.

Shape glossary
  B     images in a batch
  K     detection slots per image (the first ``num_detections[b]`` are real)
  m     mask-head resolution (28)
  C     classes including background (index 0)

Inputs (numpy arrays or tensors; ``detections`` is the model's output dict)
  num_detections     ``[B] int32``
  detection_boxes    ``[B, K, 4] float32`` (ymin, xmin, ymax, xmax), pixels of the
                     *resized* network input image
  detection_classes  ``[B, K] int32`` contiguous class indices ``1..C-1`` (0 = padding)
  detection_scores   ``[B, K] float32``
  detection_masks    ``[B, K, m, m] float32`` probabilities inside each box
  image_info         ``[B, 5] float32`` (scaled_h, scaled_w, scale, orig_h, orig_w):
                     original coordinates = resized coordinates / scale
  source_ids         ``[B] int64`` COCO image ids

Class mapping: contiguous index ``i >= 1`` is the ``i``-th category of the annotation
file sorted by id; index 0 is background (``category_ids[0] == 0``).

COCOeval: faster-coco-eval (the same 12 numbers per iou type as pycocotools, 3-4x faster on
COCO-sized sets) when installed, else pycocotools with a warning (:data:`COCO_EVALUATORS`).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import logging
import time
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np
from pycocotools import mask as mask_utils

from mrcnn_tf2.ops.paste_masks import paste_masks_numpy

IOU_TYPES = ("bbox", "segm")
# Names of COCOeval.stats, in order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl")
MASK_THRESHOLD = 0.5
#: ``CocoEvaluator(evaluator=...)``: ``auto`` is the first of these that imports.
COCO_EVALUATORS = ("faster-coco-eval", "pycocotools")

log = logging.getLogger(__name__)


def _as_numpy(value) -> np.ndarray:
    """Tensor or array-like -> numpy array."""
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """``[K, 4]`` (ymin, xmin, ymax, xmax) -> ``[K, 4]`` COCO (x, y, w, h)."""
    ymin, xmin, ymax, xmax = boxes.T
    return np.stack([xmin, ymin, xmax - xmin, ymax - ymin], axis=-1)


def encode_masks(masks: np.ndarray) -> List[dict]:
    """Binary masks -> COCO RLE dicts with ``counts`` as ``str`` (JSON-serialisable).

    Args:
      masks: ``[K, H, W] uint8`` 0/1 masks.

    Returns:
      K RLE dicts ``{"size": [H, W], "counts": str}``.
    """
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def _image_results(dets: Mapping[str, np.ndarray], info: np.ndarray, image_id: int,
                   category_ids: Sequence[int], include_masks: bool, mask_paste: str = "continuous") -> List[dict]:
    """COCO result entries of one image.

    Args:
      dets: one image's slice of the detections: ``num_detections`` scalar,
        ``detection_boxes [K, 4]``, ``detection_classes [K]``, ``detection_scores [K]``
        and, with ``include_masks``, ``detection_masks [K, m, m]``.
      info: ``[5]`` float32 image_info row.
      image_id: COCO image id.
      category_ids: contiguous class index -> COCO category id.
      include_masks: add RLE ``segmentation`` of masks pasted at original resolution.

    Returns:
      List of result dicts (``image_id``, ``category_id``, ``bbox``, ``score``[,
      ``segmentation``]).
    """
    num = int(dets["num_detections"])
    classes = dets["detection_classes"][:num].astype(np.int64)
    keep = classes > 0
    boxes = dets["detection_boxes"][:num][keep].astype(np.float32) / info[2]
    scores = dets["detection_scores"][:num][keep]
    entries = [{"image_id": image_id, "category_id": int(category_ids[c]),
                "bbox": [round(float(v), 2) for v in box], "score": float(s)}
               for c, box, s in zip(classes[keep], _xywh(boxes), scores)]
    if include_masks:
        orig_hw = (int(round(info[3])), int(round(info[4])))
        pasted = paste_masks_numpy(dets["detection_masks"][:num][keep], boxes, orig_hw,
                                   threshold=MASK_THRESHOLD, mode=mask_paste)
        for entry, rle in zip(entries, encode_masks(pasted)):
            entry["segmentation"] = rle
    return entries


def detections_to_coco(detections: Mapping[str, np.ndarray], image_info, source_ids,
                       category_ids: Sequence[int], include_masks: bool = True, mask_paste: str = "continuous"
                       ) -> List[dict]:
    """A batch of model detections -> COCO result entries in original image pixels.

    Args:
      detections: dict with ``num_detections [B]``, ``detection_boxes [B, K, 4]``
        (resized-image pixels), ``detection_classes [B, K]``, ``detection_scores [B, K]``
        and, with ``include_masks``, ``detection_masks [B, K, m, m]``.
      image_info: ``[B, 5]`` float32 (scaled_h, scaled_w, scale, orig_h, orig_w).
      source_ids: ``[B]`` int64 COCO image ids.
      category_ids: contiguous class index -> COCO category id (index 0 background).
      include_masks: add an RLE ``segmentation`` (mask pasted at original resolution,
        thresholded at 0.5) to every entry.
      mask_paste: how masks are pasted (``detection.mask_paste``).

    Returns:
      List of dicts: ``image_id`` int, ``category_id`` int, ``bbox`` [x, y, w, h]
      (rounded to 2 decimals), ``score`` float and optionally ``segmentation``.
    """
    keys = ["num_detections", "detection_boxes", "detection_classes", "detection_scores"]
    keys += ["detection_masks"] if include_masks else []
    arrays = {key: _as_numpy(detections[key]) for key in keys}
    image_info, source_ids = _as_numpy(image_info), _as_numpy(source_ids)
    results = []
    for b, image_id in enumerate(source_ids.reshape(-1)):
        dets = {key: value[b] for key, value in arrays.items()}
        results += _image_results(dets, image_info[b], int(image_id), category_ids,
                                  include_masks, mask_paste)
    return results


def coco_api(evaluator: str = "auto") -> Tuple[str, type, type]:
    """``(name, COCO class, COCOeval class)`` of ``evaluator`` (one of :data:`COCO_EVALUATORS` or
    ``auto``: faster-coco-eval, else pycocotools with a warning naming the missing package)."""
    if evaluator not in ("auto",) + COCO_EVALUATORS:
        raise ValueError(f"evaluator must be auto or one of {COCO_EVALUATORS}. Received: {evaluator!r}")
    if evaluator in ("auto", "faster-coco-eval"):
        try:
            from faster_coco_eval import COCO, COCOeval_faster
            return "faster-coco-eval", COCO, COCOeval_faster
        except ImportError as err:
            if evaluator != "auto":
                raise ImportError("faster-coco-eval is not installed: pip install 'faster-coco-eval==1.8.0' "
                                  "(or the project's [coco] extra)") from err
            log.warning("faster-coco-eval is not installed (%s): COCO metrics fall back to pycocotools, 3-4x slower "
                        "on COCO-sized sets; pip install 'faster-coco-eval==1.8.0'", err)
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    return "pycocotools", COCO, COCOeval


def _load_coco(annotation_file: Union[str, dict], coco_class: type):
    """COCO ground truth from a JSON path or an already loaded dataset dict."""
    if isinstance(annotation_file, str):
        return coco_class(annotation_file)
    coco = coco_class()
    coco.dataset = copy.deepcopy(dict(annotation_file))
    coco.createIndex()
    return coco


def _results_for(results: List[dict], iou_type: str) -> List[dict]:
    """Fresh copies of the entries for one iou type (``loadRes`` edits them in place).

    For ``segm`` the box is dropped so that area and box come from the mask (as in
    detectron2); for ``bbox`` the mask is dropped.
    """
    drop = "bbox" if iou_type == "segm" else "segmentation"
    return [{k: v for k, v in entry.items() if k != drop} for entry in results]


def _coco_eval(coco_gt, results: List[dict], iou_type: str, image_ids: Sequence[int], cocoeval_class: type):
    """COCOeval for one iou type on ``image_ids``, evaluated, accumulated and summarised."""
    coco_dt = coco_gt.loadRes(_results_for(results, iou_type))
    coco_eval = cocoeval_class(coco_gt, coco_dt, iouType=iou_type)
    coco_eval.params.imgIds = list(image_ids)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval


def per_category(coco_eval) -> Dict[str, np.ndarray]:
    """The evaluator's own per-category arrays, at area ``all`` and the largest ``maxDets`` (100).

    Returns:
      ``category_ids [K]``, ``precision [T, R, K]`` (T = 10 IoUs 0.5:0.95, R = 101 recall points; -1: the
      category has no ground truth), ``recall [T, K]`` and ``iou_thresholds [T]``, ``recall_points [R]``.
      COCO's summary AP is the mean of ``precision`` over its valid entries, i.e. the mean of the per-category
      APs of :func:`per_category_rows` over the categories with ground truth.
    """
    return {"category_ids": np.asarray(coco_eval.params.catIds), "iou_thresholds": np.asarray(coco_eval.params.iouThrs),
            "recall_points": np.asarray(coco_eval.params.recThrs),
            "precision": np.asarray(coco_eval.eval["precision"])[:, :, :, 0, -1],
            "recall": np.asarray(coco_eval.eval["recall"])[:, :, 0, -1]}


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")


def per_category_rows(arrays: Mapping[str, np.ndarray], names: Mapping[int, str]) -> List[Tuple]:
    """``(category id, name, AP, AP50, AP75, AR100)`` per category (NaN: no ground truth), from
    :func:`per_category`'s arrays (not re-computed)."""
    precision, recall, ious = arrays["precision"], arrays["recall"], arrays["iou_thresholds"]
    at50, at75 = int(np.argmin(np.abs(ious - 0.5))), int(np.argmin(np.abs(ious - 0.75)))
    rows = []
    for k, cid in enumerate(arrays["category_ids"]):
        rows.append((int(cid), names.get(int(cid), str(cid)), _mean_valid(precision[:, :, k]),
                     _mean_valid(precision[at50, :, k]), _mean_valid(precision[at75, :, k]),
                     _mean_valid(recall[:, k])))
    return rows


class CocoEvaluator:
    """Accumulates detections over batches and computes COCO bbox / segm metrics.

    Attributes:
      category_ids: contiguous class index -> COCO category id (``[0] == 0``).
      class_names: contiguous class index -> name (``[0] == "background"``).
    """

    def __init__(self, annotation_file: Union[str, dict], include_masks: bool = True,
                 verbose: bool = False, mask_paste: str = "continuous", evaluator: str = "auto"):
        """Loads the ground truth (a COCO JSON path or dataset dict).

        ``verbose`` lets the COCO API print its loading messages and summaries; ``mask_paste``
        is the model's ``detection.mask_paste``; ``evaluator``: see :func:`coco_api`.
        """
        self.evaluator, coco_class, self._cocoeval_class = coco_api(evaluator)
        with self._quiet(verbose):
            self.coco_gt = _load_coco(annotation_file, coco_class)
        categories = sorted(self.coco_gt.dataset["categories"], key=lambda c: c["id"])
        self.category_ids = [0] + [int(c["id"]) for c in categories]
        self.class_names = ["background"] + [c["name"] for c in categories]
        self.include_masks = include_masks
        self.verbose = verbose
        self.mask_paste = mask_paste
        self.reset()

    @staticmethod
    def _quiet(verbose: bool):
        """Context that swallows stdout unless ``verbose``."""
        if verbose:
            return contextlib.nullcontext()
        return contextlib.redirect_stdout(io.StringIO())

    def reset(self) -> None:
        """Forgets all accumulated results and seen images."""
        self._results: List[dict] = []
        self._image_ids: set = set()
        #: ``{iou type: per_category(...) arrays}`` of the last :meth:`evaluate` (empty: no results).
        self.per_category: Dict[str, Dict[str, np.ndarray]] = {}

    def per_class_rows(self) -> List[Tuple]:
        """``(category id, name, bbox AP, AP50, AP75, AR100, segm AP, AP50, AP75, AR100)`` per category of the last
        :meth:`evaluate` (the evaluator's own per-category arrays; NaN where a category has no ground truth)."""
        names = dict(zip(self.category_ids, self.class_names))
        tables = {t: per_category_rows(a, names) for t, a in self.per_category.items()}
        if not tables:
            return []
        first = next(iter(tables.values()))
        return [row + tuple(v for t in list(tables)[1:] for v in tables[t][i][2:]) for i, row in enumerate(first)]

    def update(self, detections: Mapping[str, np.ndarray], image_info, source_ids) -> None:
        """Adds one batch (see ``detections_to_coco`` for the shapes)."""
        self._results += detections_to_coco(detections, image_info, source_ids,
                                            self.category_ids, self.include_masks, self.mask_paste)
        self._image_ids.update(int(i) for i in _as_numpy(source_ids).reshape(-1))

    def results(self) -> List[dict]:
        """The accumulated COCO result entries."""
        return self._results

    def write_results(self, path: str) -> None:
        """Writes the accumulated results as a COCO results JSON file."""
        with open(path, "w") as f:
            json.dump(self._results, f)

    def evaluate(self) -> Dict[str, float]:
        """COCOeval on the images seen so far.

        Returns:
          ``{"bbox/AP": ..., ..., "segm/ARl": ...}``: the 12 COCO stats per iou type
          (``segm`` only with ``include_masks``); all zeros when there are no results.
        """
        iou_types = IOU_TYPES if self.include_masks else IOU_TYPES[:1]
        metrics, start = {}, time.perf_counter()
        self.per_category = {}
        for iou_type in iou_types:
            stats = np.zeros(len(STAT_NAMES))
            if self._results:
                with self._quiet(self.verbose):
                    coco_eval = _coco_eval(self.coco_gt, self._results, iou_type, sorted(self._image_ids),
                                           self._cocoeval_class)
                stats = np.asarray(coco_eval.stats, np.float64)
                self.per_category[iou_type] = per_category(coco_eval)
            metrics.update({f"{iou_type}/{name}": float(value)
                            for name, value in zip(STAT_NAMES, stats)})
        log.info("COCO metrics (%s) of %d images, %d detections: %.2f s", self.evaluator, len(self._image_ids),
                 len(self._results), time.perf_counter() - start)
        return metrics


def draw_reports(folder: str, evaluator: "CocoEvaluator", worst: int = 3) -> List[str]:
    """``per_class_ap.png`` (bbox and segm AP per class) and ``pr_curves.png`` (IoU 0.50 and 0.75: all classes and
    the ``worst`` classes by AP), from the evaluator's per-category arrays of its last evaluation."""
    from common.io import plots

    rows = evaluator.per_class_rows()
    if not rows:
        return []
    names = [r[1] for r in rows]
    series = {"bbox AP": [r[2] for r in rows]}
    if "segm" in evaluator.per_category:
        series["segm AP"] = [r[6] for r in rows]
    paths = [plots.bars(series, names, os.path.join(folder, "per_class_ap.png"), "AP per class (COCO 0.50:0.95)",
                        "AP")]
    arrays = evaluator.per_category["bbox"]
    precision, ious = arrays["precision"], arrays["iou_thresholds"]
    panels = {}
    for iou in (0.5, 0.75):
        t = int(np.argmin(np.abs(ious - iou)))
        valid = [k for k in range(precision.shape[2]) if (precision[t, :, k] > -1).all()]
        if not valid:
            continue
        curves = {"all classes": precision[t][:, valid].mean(axis=1)}
        for k in sorted(valid, key=lambda k: precision[t, :, k].mean())[:worst]:
            curves[names[k]] = precision[t, :, k]
        panels[f"bbox, IoU {iou:.2f}"] = curves
    if panels:
        paths.append(plots.pr_curves(arrays["recall_points"], panels, os.path.join(folder, "pr_curves.png")))
    return paths


def pr_curves(evaluator: "CocoEvaluator", ious: Sequence[float] = (0.5, 0.75)) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``{"pr_bbox_iou50/all", "pr_bbox_iou50/<class>", ...: (precision [R], recall points [R])}`` of the last
    evaluation (classes without ground truth left out; "all" is their mean, as COCO's AP averages them)."""
    arrays = evaluator.per_category.get("bbox")
    if not arrays:
        return {}
    names = [r[1] for r in evaluator.per_class_rows()]
    precision, recall = arrays["precision"], arrays["recall_points"]
    curves = {}
    for iou in ious:
        t = int(np.argmin(np.abs(arrays["iou_thresholds"] - iou)))
        valid = [k for k in range(precision.shape[2]) if (precision[t, :, k] > -1).all()]
        if valid:
            curves[f"pr_bbox_iou{round(iou * 100)}/all"] = (precision[t][:, valid].mean(axis=1), recall)
        curves.update({f"pr_bbox_iou{round(iou * 100)}/{names[k]}": (precision[t, :, k], recall) for k in valid})
    return curves


def format_metrics_table(metrics: Mapping[str, float]) -> str:
    """Metrics dict (``"bbox/AP"`` ...) -> a text table, rows AP..ARl, columns bbox/segm.

    Missing values are shown as ``-``.
    """
    lines = [f"{'metric':<10}" + "".join(f"{t:>9}" for t in IOU_TYPES)]
    for name in STAT_NAMES:
        cells = [metrics.get(f"{t}/{name}") for t in IOU_TYPES]
        lines.append(f"{name:<10}" + "".join(
            f"{'-':>9}" if v is None else f"{v:>9.4f}" for v in cells))
    return "\n".join(lines)
