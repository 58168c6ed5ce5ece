"""evaluation: COCO result entries, COCOeval metrics on a tiny ground truth, table."""
import json

import numpy as np
import pytest

from mrcnn_tf2.evaluation import (CocoEvaluator, STAT_NAMES, detections_to_coco,
                                  format_metrics_table)

SCALE = 0.5
# image id -> (height, width) and objects (category id, ymin, xmin, ymax, xmax).
IMAGES = {11: (40, 60), 12: (50, 30)}
OBJECTS = {11: [(3, 10, 20, 30, 50), (7, 2, 4, 12, 16)], 12: [(7, 20, 6, 44, 26)]}


def rectangle_annotation(ann_id, image_id, cat_id, ymin, xmin, ymax, xmax):
    """A GT rectangle with a polygon mask, COCO style."""
    return {"id": ann_id, "image_id": image_id, "category_id": cat_id, "iscrowd": 0,
            "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
            "area": (xmax - xmin) * (ymax - ymin),
            "segmentation": [[xmin, ymin, xmax, ymin, xmax, ymax, xmin, ymax]]}


@pytest.fixture(scope="module")
def gt():
    objects = [(i, *obj) for i, objs in OBJECTS.items() for obj in objs]
    return {"images": [{"id": i, "height": h, "width": w} for i, (h, w) in IMAGES.items()],
            "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
            "annotations": [rectangle_annotation(k + 1, *obj)
                            for k, obj in enumerate(objects)]}


def batch_from_gt(shift=0.0, slots=4):
    """Detections equal to the GT, in resized (x SCALE) pixels, padded to ``slots``."""
    contiguous = {3: 1, 7: 2}
    dets = {"num_detections": np.zeros(2, np.int32),
            "detection_boxes": np.zeros((2, slots, 4), np.float32),
            "detection_classes": np.zeros((2, slots), np.int32),
            "detection_scores": np.zeros((2, slots), np.float32),
            "detection_masks": np.ones((2, slots, 28, 28), np.float32)}
    for b, image_id in enumerate(IMAGES):
        for k, (cat_id, *box) in enumerate(OBJECTS[image_id]):
            dets["detection_boxes"][b, k] = (np.array(box) + shift) * SCALE
            dets["detection_classes"][b, k] = contiguous[cat_id]
            dets["detection_scores"][b, k] = 0.9 - 0.1 * k
        dets["num_detections"][b] = len(OBJECTS[image_id])
    info = np.array([[h * SCALE, w * SCALE, SCALE, h, w] for h, w in IMAGES.values()],
                    np.float32)
    return dets, info, np.array(list(IMAGES), np.int64)


def test_category_mapping_sorted_by_id(gt):
    evaluator = CocoEvaluator(gt)
    assert evaluator.category_ids == [0, 3, 7]
    assert evaluator.class_names == ["background", "cat", "dog"]


def test_detections_to_coco_entries():
    dets, info, ids = batch_from_gt()
    dets["detection_classes"][1, 1] = 1  # beyond num_detections: ignored
    results = detections_to_coco(dets, info, ids, [0, 3, 7])
    assert len(results) == 3
    first = results[0]
    assert (first["image_id"], first["category_id"]) == (11, 3)
    assert first["bbox"] == [20.0, 10.0, 30.0, 20.0]
    assert first["score"] == pytest.approx(0.9)
    assert first["segmentation"]["size"] == [40, 60]
    assert isinstance(first["segmentation"]["counts"], str)
    assert "segmentation" not in detections_to_coco(dets, info, ids, [0, 3, 7], False)[0]


def test_perfect_detections_give_ap_one(gt, tmp_path):
    evaluator = CocoEvaluator(gt)
    evaluator.update(*batch_from_gt())
    metrics = evaluator.evaluate()
    assert set(metrics) == {f"{t}/{n}" for t in ("bbox", "segm") for n in STAT_NAMES}
    assert metrics["bbox/AP"] == pytest.approx(1.0)
    assert metrics["segm/AP"] == pytest.approx(1.0)
    path = tmp_path / "results.json"
    evaluator.write_results(str(path))
    assert json.loads(path.read_text()) == evaluator.results()
    assert "segm" in format_metrics_table(metrics)


def test_shifted_detections_score_lower(gt):
    evaluator = CocoEvaluator(gt)
    evaluator.update(*batch_from_gt(shift=3.0))
    metrics = evaluator.evaluate()
    assert 0.0 < metrics["bbox/AP"] < 1.0
    assert 0.0 < metrics["segm/AP"] < 1.0


def test_no_detections_give_zeros_and_reset(gt, capsys):
    evaluator = CocoEvaluator(gt)
    dets, info, ids = batch_from_gt()
    dets["num_detections"][:] = 0
    evaluator.update(dets, info, ids)
    assert evaluator.results() == []
    assert set(evaluator.evaluate().values()) == {0.0}
    evaluator.update(*batch_from_gt())
    evaluator.reset()
    assert evaluator.results() == [] and evaluator.evaluate()["bbox/AP"] == 0.0
    assert capsys.readouterr().out == ""


def test_metrics_table_layout():
    table = format_metrics_table({"bbox/AP": 0.5, "bbox/ARl": 0.25})
    lines = table.splitlines()
    assert len(lines) == 1 + len(STAT_NAMES)
    assert lines[1].split() == ["AP", "0.5000", "-"]
    assert lines[-1].split() == ["ARl", "0.2500", "-"]
