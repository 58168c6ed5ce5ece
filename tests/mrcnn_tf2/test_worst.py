"""Mask R-CNN's worst validation images (mrcnn_tf2.worst): the per-image score and the drawn tiles."""
import csv
import os

import numpy as np
import pytest
from PIL import Image

from mrcnn_tf2.worst import WorstImages, image_score

GT_BOXES = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 0, 0]], np.float32)
GT_CLASSES = np.array([1, 2, -1])


def _detections(rows):
    """``[(box, class, score)]`` -> padded (boxes [4, 4], classes [4], scores [4])."""
    boxes, classes, scores = np.zeros((4, 4), np.float32), np.zeros(4, int), np.zeros(4, np.float32)
    for i, (box, cls, score) in enumerate(rows):
        boxes[i], classes[i], scores[i] = box, cls, score
    return boxes, classes, scores


@pytest.mark.parametrize("rows, expected", [
    ([([0, 0, 10, 10], 1, 0.9), ([20, 20, 40, 40], 2, 0.8)], 1.0),  # both found
    ([([0, 0, 10, 10], 1, 0.9)], 0.5),  # one of two missed
    ([([0, 0, 10, 10], 2, 0.9)], 0.0),  # right place, wrong class: a miss and a false alarm
    ([([0, 0, 10, 10], 1, 0.9), ([0, 0, 10, 10], 1, 0.8), ([20, 20, 40, 40], 2, 0.7)], 2 / 3),  # a duplicate
    ([([0, 0, 10, 10], 1, 0.3), ([20, 20, 40, 40], 2, 0.2)], 0.0),  # below 0.5: not counted
    ([([0, 0, 10, 10], 1, 0.9), ([20, 20, 40, 40], 2, 0.9), ([60, 60, 70, 70], 1, 0.9)], 2 / 3),  # a false alarm
])
def test_image_score_is_the_found_share(rows, expected):
    assert image_score(*_detections(rows), GT_BOXES, GT_CLASSES) == pytest.approx(expected)


def test_an_empty_image_with_no_detection_scores_one():
    assert image_score(*_detections([]), np.zeros((2, 4)), np.array([-1, -1])) == 1.0


def _batch(source_ids, found):
    """Validation outputs of images whose detections find ``found[i]`` of the two objects."""
    n = len(source_ids)
    boxes, classes, scores = (np.stack([x] * n) for x in _detections([]))
    for i, count in enumerate(found):
        for k in range(count):
            boxes[i, k], classes[i, k], scores[i, k] = GT_BOXES[k], GT_CLASSES[k], 0.9
    return {"source_ids": np.array(source_ids), "detection_boxes": boxes, "detection_classes": classes,
            "detection_scores": scores, "detection_masks": np.full((n, 4, 28, 28), 0.9, np.float32),
            "gt_boxes": np.stack([GT_BOXES] * n), "gt_classes": np.stack([GT_CLASSES] * n),
            "image_info": np.tile(np.array([[128, 128, 1.0, 128, 128]], np.float32), (n, 1))}


def test_keeps_the_lowest_scoring_images_across_batches():
    worst = WorstImages(count=2)
    worst.update(_batch([1, 2, 3], [2, 1, 2]))
    worst.update(_batch([4, 5], [0, 2]))
    assert worst.scored == 5 and [k["source_id"] for k in worst.kept] == [4, 2]
    assert [k["score"] for k in worst.kept] == [0.0, 0.5]


def test_tiles_show_ground_truth_beside_prediction(tmp_path):
    from dataset.make_synthetic_shapes import make_dataset
    from mrcnn_tf2.data.coco import CocoDataset

    paths = make_dataset(str(tmp_path / "shapes"), num_train=1, num_val=3, image_size=64, seed=0)
    reference = CocoDataset(paths["val_annotations"], paths["val_images"])
    worst = WorstImages(count=2)
    worst.update(_batch(reference.image_ids, [0, 2, 1]))
    written = worst.draw(str(tmp_path / "eval"), reference, ["background", "circle", "square", "triangle"])
    tiles, table = written[:-1], written[-1]
    assert len(tiles) == 2 and table.endswith("worst.csv")
    for path in tiles:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 2 * 160  # two panels side by side
    rows = list(csv.DictReader(open(table)))
    assert [int(r["image_id"]) for r in rows] == [reference.image_ids[0], reference.image_ids[2]]
    assert WorstImages().draw(str(tmp_path / "none"), None, []) == [] and not os.path.exists(tmp_path / "none")
