"""Pictures of Mask R-CNN detections: tinted masks, box outlines and "name 0.93" labels.

Shape glossary
  K     detections
  H, W  image size (the original image; boxes and masks are in its pixels)

Colours are a deterministic function of the class index (golden-ratio hues), so a
class keeps its colour across images and runs.
"""
from __future__ import annotations

import colorsys
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MASK_ALPHA = 0.5
MASK_THRESHOLD = 0.5
BOX_WIDTH = 2
_GOLDEN_RATIO = 0.618033988749895


def class_color(class_index: int) -> Tuple[int, int, int]:
    """Deterministic, well-spread RGB colour of a class index."""
    hue = (int(class_index) * _GOLDEN_RATIO) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(red * 255), int(green * 255), int(blue * 255)


def _text_color(color: Tuple[int, int, int]) -> Tuple[int, int, int]:
    """Black or white, whichever reads better on ``color`` (by luma)."""
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luma > 150 else (255, 255, 255)


def _blend_masks(image: np.ndarray, masks: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Tints mask pixels with their class colour.

    Args:
      image: ``[H, W, 3] uint8``.
      masks: ``[K, H, W]`` float probabilities or 0/1; pixels ``>= 0.5`` are tinted.
      classes: ``[K]`` int class indices.

    Returns:
      ``[H, W, 3] uint8`` copy with the masks blended at ``MASK_ALPHA``.
    """
    out = image.astype(np.float32)
    for mask, cls in zip(masks, classes):
        inside = np.asarray(mask) >= MASK_THRESHOLD
        out[inside] = (1.0 - MASK_ALPHA) * out[inside] + MASK_ALPHA * np.array(class_color(cls))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _draw_box_and_label(draw: ImageDraw.ImageDraw, box: Sequence[float], text: str,
                        color: Tuple[int, int, int], font) -> None:
    """Box outline plus a filled label tag on its top-left corner.

    Args:
      box: ``[4]`` float (ymin, xmin, ymax, xmax) in image pixels (continuous).
    """
    ymin, xmin, ymax, xmax = [float(v) for v in box]
    draw.rectangle([xmin, ymin, xmax - 1, ymax - 1], outline=color, width=BOX_WIDTH)
    left, top, right, bottom = draw.textbbox((xmin, ymin), text, font=font)
    tag_top = max(ymin - (bottom - top) - 2, 0.0)
    draw.rectangle([xmin, tag_top, xmin + (right - left) + 2, tag_top + (bottom - top) + 2],
                   fill=color)
    draw.text((xmin + 1, tag_top + 1 - (top - ymin)), text, fill=_text_color(color), font=font)


def drawn_detections(boxes: np.ndarray, scores: np.ndarray, score_threshold: float = 0.5,
                     overlap_threshold: float = 1.0) -> np.ndarray:
    """Indices (by descending score) of the detections a drawing shows.

    Those scoring at least ``score_threshold``, less any whose box overlaps a higher-scoring shown box by
    IoU above ``overlap_threshold``: the model's NMS is per class, so one object can come out twice under
    two class names (``1.0`` shows them all).

    Args:
      boxes: ``[K, 4]``; scores: ``[K]``.
    Returns:
      ``[D] int`` indices into the K detections.
    """
    from mrcnn_tf2.ops.box_ops import iou

    scores = np.asarray(scores)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= score_threshold]
    overlaps = iou(np.asarray(boxes, np.float32), np.asarray(boxes, np.float32)).numpy() if order else None
    kept: list = []
    for index in order:
        if not kept or overlaps[index, kept].max() <= overlap_threshold:
            kept.append(index)
    return np.asarray(kept, np.int64)


def draw_detections(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                    scores: np.ndarray, masks: Optional[np.ndarray],
                    class_names: Sequence[str], score_threshold: float = 0.5,
                    overlap_threshold: float = 1.0) -> Image.Image:
    """Draws the detections :func:`drawn_detections` picks on a copy of ``image``.

    Args:
      image: ``[H, W, 3] uint8`` RGB image.
      boxes: ``[K, 4]`` float (ymin, xmin, ymax, xmax) in image pixels.
      classes: ``[K]`` int contiguous class indices into ``class_names``.
      scores: ``[K]`` float detection scores.
      masks: ``[K, H, W]`` float probabilities or 0/1 masks at image resolution, or None.
      class_names: class index -> name (index 0 background).
      score_threshold: detections scoring lower are not drawn.
      overlap_threshold: a box overlapping a higher-scoring drawn box by more IoU is not drawn.

    Returns:
      ``PIL.Image`` RGB of size ``W x H``.
    """
    keep = drawn_detections(boxes, scores, score_threshold, overlap_threshold)
    boxes, classes = np.asarray(boxes)[keep], np.asarray(classes)[keep].astype(int)
    scores = np.asarray(scores)[keep]
    pixels = np.asarray(image, np.uint8)
    if masks is not None:
        pixels = _blend_masks(pixels, np.asarray(masks)[keep], classes)
    picture = Image.fromarray(pixels)
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default()
    for box, cls, score in zip(boxes, classes, scores):
        _draw_box_and_label(draw, box, f"{class_names[cls]} {score:.2f}", class_color(cls),
                            font)
    return picture


def draw_ground_truth(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, masks: Optional[np.ndarray],
                      class_names: Sequence[str]) -> Image.Image:
    """The annotated objects on a copy of ``image``, labelled by class name only (no score).

    Args:
      image: ``[H, W, 3] uint8``; boxes ``[K, 4]`` (ymin, xmin, ymax, xmax) pixels; classes ``[K]`` int;
      masks: ``[K, H, W]`` 0/1 or None; class_names: class index -> name.
    """
    classes = np.asarray(classes).astype(int)
    pixels = np.asarray(image, np.uint8)
    if masks is not None and len(masks):
        pixels = _blend_masks(pixels, masks, classes)
    picture = Image.fromarray(pixels)
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default()
    for box, cls in zip(np.asarray(boxes), classes):
        _draw_box_and_label(draw, box, class_names[cls], class_color(cls), font)
    return picture


def save_detections_png(path: str, image: np.ndarray, boxes: np.ndarray,
                        classes: np.ndarray, scores: np.ndarray,
                        masks: Optional[np.ndarray], class_names: Sequence[str],
                        score_threshold: float = 0.5, overlap_threshold: float = 1.0) -> None:
    """``draw_detections`` written to ``path`` as PNG (same arguments)."""
    draw_detections(image, boxes, classes, scores, masks, class_names,
                    score_threshold, overlap_threshold).save(path, format="PNG")
