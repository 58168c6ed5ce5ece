"""Mask R-CNN on image files: per-image detections, a COCO results JSON and drawn PNGs.

Shape glossary
  H, W   original image size;  K  detections kept for an image (``num_detections``)

The :class:`Detector` runs the same traced function as the exported
``serving_default`` signature (``mrcnn_tf2.export.DetectionModule``), so preprocessing,
the fixed network input size and the "scaled boxes -> original boxes + pasted masks"
post-processing have one implementation shared with the SavedModel.

Score threshold: ``detect`` returns and ``detections.json`` keeps ALL detections (as a
COCO evaluation wants); only the PNGs and the printed count use ``score_threshold`` and
``overlap_threshold`` (the model's NMS is per class, so a drawing leaves out a box that overlaps a
higher-scoring drawn one: the same object under a second class name).
``load_image`` raises ``ValueError`` naming an unreadable file; ``run_on_files`` names it and goes on.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from mrcnn_tf2.data.inputs import InputConfig
from mrcnn_tf2.data.preprocessing import decode_image, preprocess_image
from mrcnn_tf2.evaluation import encode_masks
from mrcnn_tf2.experiments import DRAW_OVERLAP, DRAW_SCORE
from mrcnn_tf2.export import DetectionModule
from mrcnn_tf2.visualize import drawn_detections, save_detections_png

RESULTS_FILE = "detections.json"
IMAGES_FILE = "images.json"


def load_image(path: str) -> np.ndarray:
    """Reads a JPEG/PNG/GIF/BMP file -> ``[H, W, 3] uint8`` RGB.

    Raises:
      ValueError: the file cannot be read or decoded (the message names it).
    """
    from common.io.pixel_budget import check_file

    check_file(path)
    try:
        return decode_image(tf.io.read_file(path)).numpy()
    except (tf.errors.OpError, ValueError) as error:
        message = getattr(error, "message", str(error))
        raise ValueError(f"Cannot read image file {path}: {message}") from error


def image_ids_for(paths: Sequence[str]) -> List[int]:
    """COCO-style ids: the file stems when all are distinct numbers (``000000397133``), else indices."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if stems and all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(len(paths)))


def coco_entries(detections: Dict[str, np.ndarray], image_id: int) -> List[dict]:
    """One image's :meth:`Detector.detect` output -> COCO result dicts.

    Returns:
      ``{"image_id", "category_id", "bbox": [x, y, w, h] (2 decimals), "score",
      "segmentation": RLE}`` per detection, in original-image pixels.
    """
    ymin, xmin, ymax, xmax = np.asarray(detections["boxes"], np.float64).reshape(-1, 4).T
    bboxes = np.stack([xmin, ymin, xmax - xmin, ymax - ymin], axis=-1)
    rles = encode_masks(detections["masks"])
    return [{"image_id": int(image_id), "category_id": int(cid), "bbox": [round(float(v), 2) for v in box],
             "score": float(score), "segmentation": rle}
            for cid, box, score, rle in zip(detections["category_ids"], bboxes, detections["scores"], rles)]


def _png_path(out_dir: str, path: str, image_id: int, used: set) -> str:
    """``out_dir/<stem>_pred.png``; ``<stem>_<image_id>_pred.png`` if that name is taken."""
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"{stem}_pred.png" if f"{stem}_pred.png" not in used else f"{stem}_{image_id}_pred.png"
    used.add(name)
    return os.path.join(out_dir, name)


def _write_json(path: str, value) -> None:
    """Writes ``value`` as JSON to ``path``."""
    with open(path, "w") as f:
        json.dump(value, f)


class Detector:
    """Runs a ``MaskRCNN`` on uint8 images and writes results.

    Args:
      model: a ``MaskRCNN`` (built on first use if needed).
      input_config: resize / normalisation; ``batch_padded_size()`` is the fixed network
        input size (see ``mrcnn_tf2.export``).
      class_names: ``K`` names by contiguous class index (0 background).
      category_ids: ``K`` dataset category ids by class index (``[0] == 0``).
      score_threshold: detections drawn and counted in the printed line; all detections
        are returned and written to the JSON.
      overlap_threshold: IoU above which a box overlapping a higher-scoring drawn box (of any
        class) is not drawn nor counted (default: the detection NMS's 0.5; 1.0 draws all).
    """

    def __init__(self, model, input_config: InputConfig, class_names: Sequence[str],
                 category_ids: Sequence[int], score_threshold: float = DRAW_SCORE,
                 overlap_threshold: float = DRAW_OVERLAP):
        self.module = DetectionModule(model, input_config, class_names, category_ids)
        self.class_names = self.module.class_names
        self.score_threshold, self.overlap_threshold = float(score_threshold), float(overlap_threshold)
        self._class_index = {cid: index for index, cid in enumerate(self.module.category_ids)}

    @classmethod
    def from_workspace(cls, workspace: str, checkpoint: Optional[str] = None, **thresholds) -> "Detector":
        """The trained model of a ``main.py train`` run (``model_best``, else ``checkpoint-latest``)."""
        from common.command.api import load_for_inference

        flags = ["--workspace", workspace] + (["--checkpoint", checkpoint] if checkpoint else [])
        return cls._of(load_for_inference(flags), **thresholds)

    @classmethod
    def from_pretrained(cls, weights: str = "maskrcnn_resnet50_fpn_coco", **thresholds) -> "Detector":
        """Published weights by name (``main.py weights list``; torchvision's spelling works), downloaded once."""
        from common.command.api import load_for_inference
        from common.weights.registry import get

        entry = get(weights)
        return cls._of(load_for_inference(["--model", entry.fits[0], f"--pretrained={entry.name}"]), **thresholds)

    @classmethod
    def _of(cls, loaded, **thresholds) -> "Detector":
        family, experiment, model = loaded
        data = experiment.data
        return cls(model, family._inputs(experiment), list(data.class_names), list(data.category_ids), **thresholds)

    def detect(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        """Detections of one image, in its original pixels.

        Args:
          image: ``[H, W, 3] uint8`` RGB.

        Returns:
          ``boxes [K, 4] float32`` (ymin, xmin, ymax, xmax) clipped to the image,
          ``scores [K] float32`` descending, ``classes [K] int64`` contiguous indices,
          ``category_ids [K] int64``, ``class_names`` list of K str,
          ``masks [K, H, W] uint8`` 0/1.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"Expected an [H, W, 3] uint8 image. Received: shape={image.shape}, "
                             f"dtype={image.dtype}")
        if self.module.input_config.per_image_canvas:  # torchvision: the image's own multiple-of-32 canvas
            inputs, info = preprocess_image(tf.constant(image), self.module.input_config)
            out = self.module.detect(inputs[None], info[None], tf.shape(image)[:2])
        else:
            out = self.module.serve(tf.constant(image[None]))
        num = int(out["num_detections"][0])
        category_ids = out["detection_classes"][0, :num].numpy().astype(np.int64)
        return {"boxes": out["detection_boxes"][0, :num].numpy(),
                "scores": out["detection_scores"][0, :num].numpy(),
                "classes": np.array([self._class_index[int(c)] for c in category_ids], np.int64),
                "category_ids": category_ids,
                "class_names": [n.decode() for n in out["detection_class_names"][0, :num].numpy()],
                "masks": out["detection_masks"][0, :num].numpy()}

    def detect_files(self, paths: Sequence[str]) -> Iterator[Tuple[str, Dict[str, np.ndarray]]]:
        """Yields ``(path, detect(load_image(path)))`` for each path, in order."""
        for path in paths:
            yield path, self.detect(load_image(path))

    def _summary(self, path: str, detections: Dict[str, np.ndarray], png: str) -> str:
        """``"path: N detections (top: name 0.93) -> png"``, N counting the drawn ones."""
        count = len(self._drawn(detections))
        top = f" (top: {detections['class_names'][0]} {detections['scores'][0]:.2f})" if count else ""
        return f"{path}: {count} detections{top} -> {png}"

    def _draw(self, png: str, image: np.ndarray, detections: Dict[str, np.ndarray]) -> None:
        """Writes the drawn detections (score and overlap thresholds) over ``image`` to ``png``."""
        save_detections_png(png, image, detections["boxes"], detections["classes"], detections["scores"],
                            detections["masks"], self.class_names, self.score_threshold, self.overlap_threshold)

    def _drawn(self, detections: Dict[str, np.ndarray]) -> np.ndarray:
        return drawn_detections(detections["boxes"], detections["scores"], self.score_threshold,
                                self.overlap_threshold)

    def run_on_files(self, paths: Sequence[str], out_dir: str) -> Tuple[str, List[str], List[Tuple[str, str]]]:
        """Detects on every file, writes the COCO results, an image table and one PNG per image.

        Writes ``out_dir/detections.json`` (COCO results, every detection),
        ``out_dir/images.json`` (``[{"id", "file_name", "height", "width"}]`` for the
        ``image_id`` values of :func:`image_ids_for`) and ``out_dir/<stem>_pred.png``;
        prints one line per image. An unreadable file is named and skipped (the others are
        still done); the JSON files of an earlier run are removed first, so they never look current.

        Returns:
          (path of ``detections.json``, PNG paths in input order, ``(path, why)`` of the failed files).
        """
        from common.io.data_check import for_each_image

        os.makedirs(out_dir, exist_ok=True)
        results_path = os.path.join(out_dir, RESULTS_FILE)
        for name in (RESULTS_FILE, IMAGES_FILE):
            if os.path.exists(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
        results, images, pngs, used = [], [], [], set()
        ids = dict(zip(paths, image_ids_for(paths)))

        def detect_file(path):
            image = load_image(path)
            detections = self.detect(image)
            png = _png_path(out_dir, path, ids[path], used)
            self._draw(png, image, detections)
            results.extend(coco_entries(detections, ids[path]))
            images.append({"id": ids[path], "file_name": path, "height": image.shape[0], "width": image.shape[1]})
            pngs.append(png)
            print(self._summary(path, detections, png), flush=True)

        failures = for_each_image(list(paths), detect_file)
        _write_json(results_path, results)
        _write_json(os.path.join(out_dir, IMAGES_FILE), images)
        return results_path, pngs, failures
