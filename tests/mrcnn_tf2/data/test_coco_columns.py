"""mrcnn_tf2.data.coco_columns: the streamed parse equals the JSON; the workspace cache is reused, refreshed when the
file changes and rebuilt when damaged; CocoDataset gives the same records from a cache."""
import json
import logging
import os

import numpy as np
import pytest

from mrcnn_tf2.data import coco_columns
from mrcnn_tf2.data.coco import CocoDataset

from tests.mrcnn_tf2.data.test_coco import CROWD_RLE, _write_images, tiny_coco


def _messy_coco():
    """Annotations before images and categories (allowed), out of image order, every kind of segmentation."""
    coco = tiny_coco()
    coco["annotations"] += [
        {"id": 6, "image_id": 9, "category_id": 2, "bbox": [1, 1, 2, 2], "segmentation": {"size": [10, 20],
                                                                                         "counts": "52203"}},
        {"id": 7, "image_id": 5, "category_id": 7, "bbox": [0, 0, 3, 3],
         "segmentation": [[0, 0, 3, 0, 3, 3], [0.5, 0.25, 1, 1, 0, 1]]},
        {"id": 8, "image_id": 4, "category_id": 7, "bbox": [0, 0, 3, 3]},             # unlisted image
        {"id": 9, "image_id": 5, "category_id": 3, "bbox": [0, 0, 3, 3]},             # unknown category
        {"id": 10, "image_id": 5, "category_id": 7, "bbox": [0, 0, "3", 3]},          # bad box
        {"id": 11, "image_id": 5, "category_id": 7, "bbox": [0, 0, 3, 3], "segmentation": [[0, 1, 2]]},
        {"id": 12, "image_id": 9, "category_id": 2, "bbox": [0, 0, 3, 3], "segmentation": {"size": [5, 5],
                                                                                          "counts": "x"}},
    ]
    return {"annotations": coco["annotations"], "info": {"year": 2026}, "images": coco["images"],
            "categories": coco["categories"]}


@pytest.fixture
def messy(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(_messy_coco(), indent=1))
    _write_images(str(tmp_path), ("a.jpg", "b.jpg", "empty.jpg"))
    return str(path), str(tmp_path)


def test_columns_hold_every_usable_annotation_exactly_and_name_the_others(messy):
    columns = coco_columns.parse(messy[0])
    raw = {a["id"]: a for a in _messy_coco()["annotations"]}
    assert columns.ann_ids.tolist() == [1, 2, 3, 4, 7, 5, 6]  # by image id, file order within an image
    for row, ann_id in enumerate(columns.ann_ids.tolist()):
        ann = raw[ann_id]
        assert columns.bboxes[row].tolist() == ann["bbox"] and columns.ann_images[row] == ann["image_id"]
        assert columns.segmentation(row) == ann.get("segmentation")
    assert [p[0] for p in columns.problems] == [8, 9, 10, 11, 12]
    assert "which is not listed" in columns.problems[0][2] and columns.problems[0][1] is None
    assert columns.problems[1][2] == "unknown category id 3" and "not 4 finite" in columns.problems[2][2]
    assert "fewer than 3 points" in columns.problems[3][2]
    assert columns.problems[4][2] == "RLE of size [5, 5] on an image of size [10, 20]"


def test_dataset_from_the_cache_equals_the_dataset_from_the_json(messy, tmp_path, caplog):
    annotations, images = messy
    plain = CocoDataset(annotations, images)
    workspace = str(tmp_path / "ws")
    with caplog.at_level(logging.INFO):
        first = CocoDataset(annotations, images, cache_dir=workspace)
        assert "reused" not in caplog.text
        second = CocoDataset(annotations, images, cache_dir=workspace)
    assert "parsed form reused" in caplog.text and "image verdicts reused" in caplog.text
    assert isinstance(second._columns.coords, np.memmap)
    for ds in (first, second):
        assert ds.image_ids == plain.image_ids and ds.report.problems == plain.report.problems
        assert ds.ground_truth() == plain.ground_truth() and ds.dropped == plain.dropped
        for i in range(len(ds)):
            a, b = ds.record(i, with_masks=True), plain.record(i, with_masks=True)
            for key in a:
                np.testing.assert_array_equal(a[key], b[key]) if key != "segmentations" else None
            assert a["segmentations"] == b["segmentations"]


def test_a_changed_file_is_parsed_again_and_a_damaged_cache_rebuilt(messy, tmp_path, caplog):
    annotations, images = messy
    workspace = str(tmp_path / "ws")
    assert len(CocoDataset(annotations, images, cache_dir=workspace).ground_truth()["annotations"]) == 5
    coco = _messy_coco()
    coco["annotations"] = coco["annotations"][:1]
    with open(annotations, "w") as f:
        json.dump(coco, f)
    assert len(CocoDataset(annotations, images, cache_dir=workspace).ground_truth()["annotations"]) == 1
    folder = coco_columns.cache_folder(workspace, annotations)
    with open(os.path.join(folder, "columns.npz"), "r+b") as f:
        f.truncate(100)
    with caplog.at_level(logging.WARNING):
        again = CocoDataset(annotations, images, cache_dir=workspace)
    assert "is damaged" in caplog.text and len(again.ground_truth()["annotations"]) == 1
    with open(os.path.join(folder, "meta.json"), "w") as f:
        f.write("{")
    assert len(CocoDataset(annotations, images, cache_dir=workspace).ground_truth()["annotations"]) == 1


def test_crowd_rle_and_polygons_decode_from_the_mapped_coordinates(messy, tmp_path):
    annotations, images = messy
    CocoDataset(annotations, images, cache_dir=str(tmp_path / "ws"))
    ds = CocoDataset(annotations, images, cache_dir=str(tmp_path / "ws"))
    record = ds.record(ds.image_ids.index(9), with_masks=True)
    assert record["is_crowd"].tolist() == [True, False] and record["segmentations"][0] == CROWD_RLE
    assert record["masks"].shape == (2, 10, 20) and record["masks"][0].sum() == 6


@pytest.mark.parametrize("change,message", [
    (lambda c: c["images"].append(dict(c["images"][0])), "duplicate image ids"),
    (lambda c: c["images"][0].update(id="9"), "image id '9' is not an integer"),
    (lambda c: c["images"][0].update(height=0), "height 0 is not a positive integer"),
    (lambda c: c.pop("annotations"), "expected a list under 'annotations'"),
    (lambda c: c["categories"][0].pop("name"), "lacks ['name']"),
])
def test_a_malformed_file_is_one_error_naming_it(tmp_path, change, message):
    coco = _messy_coco()
    change(coco)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="bad.json") as info:
        coco_columns.parse(str(path))
    assert message in str(info.value)


def test_leftovers_of_a_killed_parse_are_removed_and_live_ones_kept(messy, tmp_path):
    annotations, images = messy
    workspace = str(tmp_path / "ws")
    folder = coco_columns.cache_folder(workspace, annotations)
    os.makedirs(os.path.dirname(folder))
    dead = subprocess_pid_that_ended()
    for name in (f"{folder}.tmp-{dead}", f"{folder}.old-{dead}", f"{folder}.tmp-{os.getppid()}"):
        os.makedirs(name)
    open(f"{folder}.coords-{dead}", "wb").close()
    CocoDataset(annotations, images, cache_dir=workspace)
    left = sorted(name for name in os.listdir(os.path.dirname(folder)) if not name.startswith("checked-"))
    assert left == sorted([os.path.basename(folder), f"{os.path.basename(folder)}.tmp-{os.getppid()}"])


def subprocess_pid_that_ended() -> int:
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
