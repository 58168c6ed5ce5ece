"""Tests for dataset.make_synthetic_shapes: layout, determinism, COCO validity, edge cases."""
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from dataset import make_synthetic_shapes as mss

EDGE = dict(num_train=6, num_val=3, image_size=(40, 56), empty_fraction=0.34, crowd=True,
            zero_area=True)


def load(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """Paths of a small dataset with every edge case switched on."""
    return mss.make_dataset(str(tmp_path_factory.mktemp("shapes")), seed=0, **EDGE)


def test_layout_counts_and_sizes(edge):
    assert sorted(os.listdir(edge["train_images"])) == [f"{i:012d}.jpg" for i in range(1, 7)]
    assert len(os.listdir(edge["val_images"])) == 3
    coco = load(edge["train_annotations"])
    assert [c["id"] for c in coco["categories"]] == [1, 3, 7]
    assert [c["name"] for c in coco["categories"]] == ["circle", "square", "triangle"]
    assert [i["id"] for i in load(edge["val_annotations"])["images"]] == [1000001, 1000002,
                                                                          1000003]
    image = Image.open(os.path.join(edge["train_images"], coco["images"][0]["file_name"]))
    assert image.size == (56, 40) and image.mode == "RGB" and image.format == "JPEG"
    assert all((i["height"], i["width"]) == (40, 56) for i in coco["images"])


def test_same_seed_gives_identical_bytes(tmp_path, read_tree):
    small = dict(num_train=3, num_val=1, image_size=32, crowd=True)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        mss.make_dataset(str(tmp_path / name), seed=seed, **small)
    a, b, c = (read_tree(tmp_path / d) for d in "abc")
    assert a == b and len(a) == 6
    assert a.keys() == c.keys() and a != c


def test_json_loads_in_pycocotools_and_areas_match_masks(edge):
    coco = COCO(edge["train_annotations"])
    assert len(coco.getImgIds()) == 6 and len(coco.getCatIds()) == 3
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert ann["iscrowd"] in (0, 1) and len(ann["bbox"]) == 4
        if ann["area"] == 0:
            continue
        mask = coco.annToMask(ann)
        assert mask.sum() == ann["area"]
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert x - 1 <= xs.min() and xs.max() < x + w + 1
        assert y - 1 <= ys.min() and ys.max() < y + h + 1


def test_objects_per_image_and_both_segmentation_kinds(tmp_path):
    paths = mss.make_dataset(str(tmp_path), num_train=12, num_val=1, image_size=48)
    anns = load(paths["train_annotations"])["annotations"]
    per_image = np.bincount([a["image_id"] for a in anns], minlength=13)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 4     # 5% of 12 images: none empty
    kinds = {type(a["segmentation"]).__name__ for a in anns}
    assert kinds == {"list", "dict"}
    assert all(isinstance(a["segmentation"]["counts"], str)
               for a in anns if isinstance(a["segmentation"], dict))
    assert not any(a["iscrowd"] or a["area"] == 0 for a in anns)
    sides = [max(a["bbox"][2], a["bbox"][3]) / 48 for a in anns]
    assert 0.1 < min(sides) and max(sides) < 0.55


def test_edge_cases(edge):
    coco = load(edge["train_annotations"])
    with_objects = {a["image_id"] for a in coco["annotations"]}
    assert sorted({i["id"] for i in coco["images"]} - with_objects) == [3, 6]  # floor(6 * 0.34)
    crowd = [a for a in coco["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["image_id"] == 1
    assert isinstance(crowd[0]["segmentation"]["counts"], list)      # uncompressed RLE
    rle = mask_utils.frPyObjects(crowd[0]["segmentation"], 40, 56)
    assert mask_utils.area(rle) == crowd[0]["area"] > 0
    zero = [a for a in coco["annotations"] if a["area"] == 0]
    assert len(zero) == 1 and zero[0]["bbox"][2] == 0 and zero[0]["image_id"] == 1
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
    val = load(edge["val_annotations"])["annotations"]
    assert sum(a["iscrowd"] for a in val) == 1


def test_objects_are_drawn_in_contrasting_colours(edge):
    coco = COCO(edge["train_annotations"])
    image = np.asarray(Image.open(os.path.join(edge["train_images"], "000000000002.jpg")),
                       np.float32)
    masks = [coco.annToMask(a).astype(bool) for a in coco.loadAnns(coco.getAnnIds(imgIds=2))]
    background = image[~np.any(masks, axis=0)].mean(axis=0)
    assert masks and max(m.sum() for m in masks) > 30
    for mask in masks:
        if mask.sum() > 30:
            assert np.abs(np.median(image[mask], axis=0) - background).sum() > 100


def test_cli_prints_summary(tmp_path, capsys):
    mss.main(["--out", str(tmp_path), "--num-train", "2", "--num-val", "1", "--image-size",
              "24x32", "--with-crowd"])
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "train: 2 images" in out and "(1 crowd)" in out
    assert Image.open(tmp_path / "val" / "000001000001.jpg").size == (32, 24)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="empty_fraction"):
        mss.make_dataset(str(tmp_path), 1, 1, 32, empty_fraction=1.5)
    with pytest.raises(ValueError, match="image_size"):
        mss.make_dataset(str(tmp_path), 1, 1, (8, 32))
