"""The validation images Mask R-CNN got most wrong: a per-image score and ``<workspace>/eval/worst/``.

Shape glossary
  M     ground-truth slots of an image (padding rows have class ``<= 0``)
  D     detection slots of an image (the first ``num_detections`` are real)

Per-image score (:func:`image_score`): of the ground-truth objects plus the confident false alarms, the share
found, i.e. ``found / (objects + false alarms)`` in [0, 1]; a detection counts at score >= 0.5 and finds an
object of its class at box IoU >= 0.5 (greedy, highest score first, as COCO matches). 1 when an image has
neither objects nor confident detections. Boxes only (cheap on the host); the tiles show the masks too.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Sequence

import numpy as np

from common.io import gallery

SCORE_THRESHOLD = 0.5
IOU_THRESHOLD = 0.5
_DETECTION_KEYS = ("detection_boxes", "detection_classes", "detection_scores", "detection_masks")

_LOG = logging.getLogger(__name__)


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``[N, 4]`` x ``[K, 4]`` (ymin, xmin, ymax, xmax) -> ``[N, K]`` IoU."""
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area = lambda b: np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)  # noqa: E731
    union = area(boxes)[:, None] + area(others)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def image_score(boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray,
                gt_classes: np.ndarray) -> float:
    """``found / (objects + false alarms)`` of one image (module doc).

    Args:
      boxes ``[D, 4]``, classes ``[D]``, scores ``[D]``: the image's detections (padding: score 0).
      gt_boxes ``[M, 4]``, gt_classes ``[M]``: its ground truth in the same pixels (padding: class <= 0).
    """
    confident = np.flatnonzero(np.asarray(scores) >= SCORE_THRESHOLD)
    confident = confident[np.argsort(-np.asarray(scores)[confident], kind="stable")]
    objects = np.flatnonzero(np.asarray(gt_classes) > 0)
    if not len(objects) and not len(confident):
        return 1.0
    overlaps = box_iou(np.asarray(boxes, np.float64)[confident], np.asarray(gt_boxes, np.float64)[objects])
    taken = np.zeros(len(objects), bool)
    for row, index in enumerate(confident):
        candidates = (~taken) & (np.asarray(gt_classes)[objects] == classes[index]) & (overlaps[row] >= IOU_THRESHOLD)
        if candidates.any():
            taken[np.argmax(np.where(candidates, overlaps[row], -1.0))] = True
    found = int(taken.sum())
    return found / (len(objects) + len(confident) - found)


class WorstImages:
    """Keeps the ``count`` lowest-scoring validation images of one validation (their detections, for drawing)."""

    def __init__(self, count: int = gallery.WORST_COUNT):
        self.count = count
        self.kept: List[dict] = []
        self.scored = 0

    def update(self, outputs: Dict[str, np.ndarray]) -> None:
        """One batch of the task's validation outputs (detections, ``gt_boxes``/``gt_classes`` in network-input
        pixels, ``image_info``, ``source_ids``)."""
        for b in range(len(outputs["source_ids"])):
            score = image_score(outputs["detection_boxes"][b], outputs["detection_classes"][b],
                                outputs["detection_scores"][b], outputs["gt_boxes"][b], outputs["gt_classes"][b])
            self.scored += 1
            if len(self.kept) >= self.count and score >= self.kept[-1]["score"]:
                continue
            real = np.flatnonzero(outputs["detection_scores"][b] >= SCORE_THRESHOLD)
            self.kept.append({"score": score, "source_id": int(outputs["source_ids"][b]),
                              "scale": float(outputs["image_info"][b][2]),
                              **{k: np.asarray(outputs[k][b])[real] for k in _DETECTION_KEYS}})
            self.kept = sorted(self.kept, key=lambda item: item["score"])[:self.count]

    def draw(self, folder: str, reference, class_names: Sequence[str]) -> List[str]:
        """``<folder>/worst/``: ground truth (left) beside the prediction (right) of each kept image, from the
        checked validation annotations ``reference`` (a ``CocoDataset``; None: nothing drawn, said once)."""
        if reference is None or not self.kept:
            if self.kept:
                _LOG.info("worst/ not drawn: the validation images are read from TFRecords without the "
                          "annotation JSON and image folder beside them")
            return []
        out = gallery.prepare(folder)
        index_of = {image_id: i for i, image_id in enumerate(reference.image_ids)}
        written, rows = [], []
        for rank, item in enumerate(self.kept, 1):
            try:
                record = reference.record(index_of[item["source_id"]], with_masks=True)
            except (KeyError, FileNotFoundError) as error:
                _LOG.info("worst/: image id %d not drawn (%s)", item["source_id"], error)
                continue
            written.append(gallery.save(_tile(rank, record, item, class_names), out, rank, record["path"]))
            rows.append((rank, record["path"], item["source_id"], round(item["score"], 4),
                         int((record["classes"] > 0).sum()), len(item["detection_scores"])))
        header = ("rank", "file", "image_id", "found_share", "objects", "detections_at_0.5")
        return written + [gallery.write_table(out, header, rows)]


def _tile(rank: int, record: dict, item: dict, class_names: Sequence[str]):
    """Ground truth beside prediction, captioned, for one image (original pixels)."""
    from mrcnn_tf2.inference import load_image
    from mrcnn_tf2.ops.paste_masks import paste_masks_numpy
    from mrcnn_tf2.visualize import draw_detections, draw_ground_truth

    image = load_image(record["path"])
    height, width = image.shape[:2]
    boxes = item["detection_boxes"] / max(item["scale"], 1e-12)
    masks = paste_masks_numpy(item["detection_masks"], boxes, (height, width)) if len(boxes) else None
    truth = draw_ground_truth(image, record["boxes"], record["classes"], record["masks"], class_names)
    predicted = draw_detections(image, boxes, item["detection_classes"], item["detection_scores"], masks,
                                class_names, SCORE_THRESHOLD)
    left = gallery.caption(gallery.thumbnail(truth), [f"#{rank} ground truth: {len(record['classes'])} object(s)",
                                                      os.path.basename(record["path"])])
    right = gallery.caption(gallery.thumbnail(predicted), [f"prediction (score >= {SCORE_THRESHOLD})",
                                                           f"found share {item['score']:.2f}"])
    return gallery.side_by_side(left, right)
