"""mrcnn_tf2.data.coco: class mapping, box conversion and filtering, crowd flags, masks, errors."""
import json
import logging
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from dataset import make_synthetic_shapes as mss
from mrcnn_tf2.data.coco import CocoDataset, coco_boxes, segmentation_to_mask

H, W = 10, 20
CROWD_RLE = {"counts": [22, 3, 7, 3, 165], "size": [H, W]}   # rows 2..4 of columns 2 and 3


def tiny_coco():
    """Hand-written COCO dict: categories out of order, every kind of box."""
    ann = lambda i, image, cat, bbox, **kw: {"id": i, "image_id": image, "category_id": cat,
                                            "bbox": bbox, "area": 1.0, "iscrowd": 0, **kw}
    return {
        "images": [{"id": 9, "file_name": "b.jpg", "height": H, "width": W},
                   {"id": 5, "file_name": "a.jpg", "height": H, "width": W},
                   {"id": 7, "file_name": "empty.jpg", "height": H, "width": W}],
        "categories": [{"id": 7, "name": "zebra"}, {"id": 2, "name": "cat"}],
        "annotations": [
            ann(1, 5, 7, [2, 1, 4, 3], segmentation=[[2, 1, 6, 1, 6, 4, 2, 4]]),
            ann(2, 5, 2, [18, 8, 5, 5]),                    # partly outside: clipped
            ann(3, 5, 2, [1, 1, 0, 2]),                     # zero area: dropped
            ann(4, 5, 7, [25, 0, 3, 3]),                    # fully outside: dropped
            ann(5, 9, 2, [2, 2, 2, 3], segmentation=CROWD_RLE, iscrowd=1),
        ],
    }


def _write_images(folder, names):
    for name in names:
        Image.new("RGB", (W, H), (90, 20, 200)).save(os.path.join(folder, name), format="JPEG")


@pytest.fixture
def tiny(tmp_path):
    """(annotation file, image dir) of tiny_coco with its three images."""
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(tiny_coco()))
    _write_images(str(tmp_path), ("a.jpg", "b.jpg", "empty.jpg"))
    return str(path), str(tmp_path)


def test_class_mapping_and_image_order(tiny):
    ds = CocoDataset(*tiny)
    assert ds.class_names == ["background", "cat", "zebra"]
    assert ds.category_ids == [0, 2, 7] and ds.num_classes == 3
    assert ds.image_ids == [5, 7, 9] and len(ds) == 3


def test_boxes_are_converted_clipped_and_filtered(tiny, caplog):
    with caplog.at_level(logging.INFO, logger="mrcnn_tf2.data.coco"):
        ds = CocoDataset(*tiny)
    record = ds.record(0)
    assert record["image_id"] == 5 and record["path"].endswith("a.jpg")
    assert (record["height"], record["width"]) == (H, W)
    np.testing.assert_allclose(record["boxes"], [[1, 2, 4, 6], [8, 18, 10, 20]])
    assert record["boxes"].dtype == np.float32
    np.testing.assert_array_equal(record["classes"], [2, 1])
    assert record["classes"].dtype == np.int32
    assert ds.dropped == {"zero_area": 1, "outside_image": 1, "clipped": 1}
    lines = [r for r in caplog.records if r.name == "mrcnn_tf2.data.coco"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "dropped 1 zero-area and 1 out-of-image boxes, clipped 1" in lines[0].getMessage()


def test_image_without_annotations_is_kept(tiny):
    record = CocoDataset(*tiny).record(1)
    assert record["image_id"] == 7
    assert record["boxes"].shape == (0, 4) and record["classes"].shape == (0,)
    assert CocoDataset(*tiny).masks(1).shape == (0, H, W)


def test_crowd_flag_and_masks(tiny):
    ds = CocoDataset(*tiny)
    record = ds.record(2, with_masks=True)
    np.testing.assert_array_equal(record["is_crowd"], [True])
    expected = np.zeros((1, H, W), np.uint8)
    expected[0, 2:5, 2:4] = 1
    np.testing.assert_array_equal(record["masks"], expected)
    polygon_mask = ds.masks(0)[0]
    assert polygon_mask.sum() == 12 and polygon_mask[1:4, 2:6].all()   # 3 x 4 box
    np.testing.assert_array_equal(ds.record(0)["is_crowd"], [False, False])


def test_missing_segmentation_falls_back_to_box():
    mask = segmentation_to_mask(None, 4, 5, np.array([1.0, 1.0, 3.0, 4.0]))
    assert mask.sum() == 6 and mask[1:3, 1:4].all()
    with pytest.raises(ValueError, match="RLE size"):
        segmentation_to_mask({"counts": [20], "size": [4, 4]}, 4, 5, np.zeros(4))


def test_coco_boxes_counts():
    boxes, keep, counts = coco_boxes([[0, 0, 5, 5], [-2, -2, 4, 4], [0, 0, 0, 3], [9, 9, 2, 2]],
                                     8, 8)
    np.testing.assert_array_equal(keep, [True, True, False, False])
    np.testing.assert_allclose(boxes[:2], [[0, 0, 5, 5], [0, 0, 2, 2]])
    assert counts == {"zero_area": 1, "outside_image": 1, "clipped": 1}


def test_an_image_whose_file_is_missing_or_unusable_is_left_out_and_named(tiny):
    annotations, folder = tiny
    os.remove(os.path.join(folder, "b.jpg"))
    with open(os.path.join(folder, "a.jpg"), "r+b") as f:
        f.truncate(40)
    ds = CocoDataset(annotations, folder)
    assert ds.image_ids == [7]
    problems = dict(ds.report.problems)
    assert "image file not found (image id 9" in problems[os.path.join(folder, "b.jpg")]
    assert "truncated JPEG" in problems[os.path.join(folder, "a.jpg")]
    assert [i["id"] for i in ds.ground_truth()["images"]] == [7] and ds.ground_truth()["annotations"] == []


def test_an_image_of_another_size_than_listed_is_left_out(tiny):
    annotations, folder = tiny
    Image.new("RGB", (W + 1, H), 0).save(os.path.join(folder, "a.jpg"), format="JPEG")
    ds = CocoDataset(annotations, folder)
    assert 5 not in ds.image_ids
    assert "image is 21x10, the annotations say 20x10" in dict(ds.report.problems)[os.path.join(folder, "a.jpg")]


@pytest.mark.parametrize("change, reason", [
    ({"category_id": 99}, "unknown category id 99"),
    ({"image_id": 1234}, "refers to image id 1234, which is not listed"),
    ({"bbox": [2, 1, float("nan"), 3]}, "not 4 finite numbers"),
    ({"bbox": [2, 1, -4, 3]}, "negative width or height"),
    ({"segmentation": [[5, 5, 25, 5]]}, "polygon with fewer than 3 points"),
    ({"segmentation": {"counts": [200], "size": [4, 50]}}, "RLE of size [4, 50]"),
])
def test_a_bad_annotation_is_named_by_id_and_file_and_left_out(tmp_path, change, reason):
    coco = tiny_coco()
    coco["annotations"][0].update(change)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    _write_images(str(tmp_path), ("a.jpg", "b.jpg", "empty.jpg"))
    ds = CocoDataset(str(path), str(tmp_path))
    assert len(ds.report) == 1
    where, why = ds.report.problems[0]
    assert where.startswith(f"{path} annotation 1") and reason in why, (where, why)
    kept = [a["id"] for a in ds.ground_truth()["annotations"]]
    assert kept == [2, 5]  # 1: bad; 3, 4: zero-area / outside, dropped as in training
    COCO().dataset = ds.ground_truth()  # a dataset pycocotools indexes


def test_missing_or_invalid_json(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDataset(str(tmp_path / "nope.json"), str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        CocoDataset(str(bad), str(tmp_path))
    coco = tiny_coco()
    del coco["categories"]
    bad.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="'categories'"):
        CocoDataset(str(bad), str(tmp_path))


def test_masks_match_pycocotools_on_synthetic_data(tmp_path):
    paths = mss.make_dataset(str(tmp_path), num_train=4, num_val=1, image_size=40, seed=1,
                             crowd=True, zero_area=True)
    ds = CocoDataset(paths["train_annotations"], paths["train_images"])
    reference = COCO(paths["train_annotations"])
    for index, image_id in enumerate(ds.image_ids):
        anns = [a for a in reference.loadAnns(reference.getAnnIds(imgIds=image_id))
                if a["bbox"][2] > 0]
        expected = [reference.annToMask(a) for a in anns]
        masks = ds.masks(index)
        assert masks.shape == (len(anns), 40, 40) and masks.dtype == np.uint8
        np.testing.assert_array_equal(masks, np.reshape(expected, masks.shape))
        np.testing.assert_array_equal(ds.record(index)["is_crowd"], [a["iscrowd"] for a in anns])
