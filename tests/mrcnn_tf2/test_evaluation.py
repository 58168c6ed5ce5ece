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


@pytest.mark.parametrize("evaluator_name", ["faster-coco-eval", "pycocotools"])
def test_per_class_ap_is_the_evaluators_own_and_averages_to_the_summary(gt, evaluator_name):
    """Per-category AP / AP50 / AR from the evaluator's arrays; their mean over categories with ground truth
    equals the summary AP (COCO averages the same valid entries)."""
    evaluator = CocoEvaluator(gt, evaluator=evaluator_name)
    dets, info, ids = batch_from_gt(shift=2.0)
    dets["detection_boxes"][0, 0] += 4.0 * SCALE  # the only cat (image 11, slot 0): a worse box than the dogs
    evaluator.update(dets, info, ids)
    metrics = evaluator.evaluate()
    rows = {row[1]: row for row in evaluator.per_class_rows()}
    assert set(rows) == {"cat", "dog"} and len(rows["cat"]) == 2 + 4 + 4
    for offset, iou_type in ((2, "bbox"), (6, "segm")):
        per_class_ap = [rows[name][offset] for name in ("cat", "dog")]
        assert np.mean(per_class_ap) == pytest.approx(metrics[f"{iou_type}/AP"], abs=1e-9)
        assert np.mean([rows[n][offset + 1] for n in ("cat", "dog")]) == pytest.approx(metrics[f"{iou_type}/AP50"])
        assert np.mean([rows[n][offset + 3] for n in ("cat", "dog")]) == pytest.approx(
            metrics[f"{iou_type}/ARmax100"])
    assert rows["cat"][2] < rows["dog"][2]


def test_per_class_pictures_are_real_pngs(gt, tmp_path):
    from PIL import Image

    from mrcnn_tf2.evaluation import draw_reports

    evaluator = CocoEvaluator(gt)
    evaluator.update(*batch_from_gt(shift=2.0))
    evaluator.evaluate()
    paths = draw_reports(str(tmp_path), evaluator)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["per_class_ap.png", "pr_curves.png"]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100


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


def _noisy_detections(annotations, image, rng, num_classes):
    """Detections of one image from its GT (jittered boxes, some wrong labels, false positives)."""
    boxes, classes = [], []
    for ann in annotations:
        x, y, w, h = ann["bbox"]
        boxes.append(np.array([y, x, y + h, x + w]) + rng.normal(0.0, 0.08 * max(w, h), 4))
        classes.append(ann["category_id"] if rng.random() < 0.8 else int(rng.integers(1, num_classes)))
    for _ in range(2):
        y, x = rng.uniform(0, image["height"] - 20), rng.uniform(0, image["width"] - 20)
        boxes.append(np.array([y, x, y + rng.uniform(8, 40), x + rng.uniform(8, 40)]))
        classes.append(int(rng.integers(1, num_classes)))
    count, slots = len(boxes), 32
    dets = {"num_detections": np.array([count], np.int32),
            "detection_boxes": np.zeros((1, slots, 4), np.float32),
            "detection_classes": np.zeros((1, slots), np.int32),
            "detection_scores": np.zeros((1, slots), np.float32),
            "detection_masks": np.zeros((1, slots, 28, 28), np.float32)}
    dets["detection_boxes"][0, :count] = np.clip(boxes, 0, [image["height"], image["width"]] * 2)
    dets["detection_classes"][0, :count] = classes
    dets["detection_scores"][0, :count] = np.sort(rng.uniform(0.05, 1.0, count))[::-1]
    dets["detection_masks"][0, :count] = rng.uniform(0.0, 1.0, (count, 28, 28)) ** 0.5  # ~75 % foreground
    info = np.array([[image["height"], image["width"], 1.0, image["height"], image["width"]]], np.float32)
    return dets, info, np.array([image["id"]], np.int64)


def test_faster_coco_eval_equals_pycocotools_on_the_shapes(tmp_path):
    """All 12 bbox + 12 segm numbers of both COCO APIs on the built-in shapes (50 images, noisy detections)."""
    from dataset.make_synthetic_shapes import make_dataset

    root = make_dataset(str(tmp_path), num_train=1, num_val=50, image_size=128, seed=3)["root"]
    path = f"{root}/annotations/instances_val.json"
    with open(path) as f:
        gt = json.load(f)
    evaluators = {name: CocoEvaluator(path, evaluator=name) for name in ("faster-coco-eval", "pycocotools")}
    rng = np.random.default_rng(0)
    by_image = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    contiguous = {cid: i for i, cid in enumerate(evaluators["pycocotools"].category_ids)}
    for image in gt["images"]:
        dets, info, ids = _noisy_detections(by_image.get(image["id"], []), image, rng, len(contiguous))
        dets["detection_classes"] = np.vectorize(lambda c: contiguous.get(int(c), int(c)))(dets["detection_classes"])
        for evaluator in evaluators.values():
            evaluator.update(dets, info, ids)
    fast, reference = (evaluators[name].evaluate() for name in ("faster-coco-eval", "pycocotools"))
    assert evaluators["faster-coco-eval"].evaluator == "faster-coco-eval"
    assert len(reference) == 24 and 0.05 < reference["bbox/AP50"] < 0.95 and 0.01 < reference["segm/AP"] < 0.9
    worst = max(abs(fast[k] - reference[k]) for k in reference)
    print(f"faster-coco-eval vs pycocotools, 24 numbers: max |delta| {worst:.1e}; bbox/AP50 {reference['bbox/AP50']:.4f}")
    assert worst <= 1e-12, {k: (fast[k], reference[k]) for k in reference if fast[k] != reference[k]}


def test_missing_faster_coco_eval_falls_back_with_a_warning(gt, monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_faster(name, *args, **kwargs):
        if name.startswith("faster_coco_eval"):
            raise ImportError("No module named 'faster_coco_eval'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faster)
    with caplog.at_level("WARNING"):
        evaluator = CocoEvaluator(gt)
    assert evaluator.evaluator == "pycocotools"
    assert "fall back to pycocotools" in caplog.text
    with pytest.raises(ImportError, match="pip install"):
        CocoEvaluator(gt, evaluator="faster-coco-eval")
