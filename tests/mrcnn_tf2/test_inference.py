"""inference: run_on_files writes COCO results, an image table and PNGs; path expansion."""
import json
import os

import numpy as np
import pytest
import tf_keras as keras
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from common.io.images import list_images
from mrcnn_tf2 import inference
from mrcnn_tf2.data.inputs import InputConfig
from mrcnn_tf2.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf2.testing import tiny_config

NAMES, IDS = ["background", "cat", "dog"], [0, 17, 18]
TINY = tiny_config(**{"detection.score_threshold": 0.0})
SIZES = {"000000000042.png": (100, 150), "000000000007.jpg": (90, 70)}


@pytest.fixture(scope="module")
def detector():
    keras.utils.set_random_seed(0)
    return inference.Detector(MaskRCNN(TINY, seed=0), InputConfig(image_size=(96, 128)), NAMES, IDS,
                              score_threshold=0.0)


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for name, (height, width) in SIZES.items():
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_run_on_files_writes_coco_results_and_pngs(detector, image_dir, tmp_path, capsys):
    paths = list_images([str(image_dir)])
    results_path, pngs, failures = detector.run_on_files(paths, str(tmp_path / "out"))
    assert failures == []
    with open(results_path) as f:
        results = json.load(f)
    with open(tmp_path / "out" / inference.IMAGES_FILE) as f:
        images = json.load(f)
    assert [(i["id"], i["height"], i["width"]) for i in images] == [(7, 90, 70), (42, 100, 150)]
    sizes = {i["id"]: (i["height"], i["width"]) for i in images}
    assert results and {r["image_id"] for r in results} == {7, 42}
    for r in results:
        x, y, w, h = r["bbox"]
        height, width = sizes[r["image_id"]]
        assert r["category_id"] in (17, 18) and 0 <= r["score"] <= 1
        assert 0 <= x and 0 <= y and x + w <= width + 0.01 and y + h <= height + 0.01
        assert mask_utils.decode(r["segmentation"]).shape == (height, width)
    coco = COCO()
    coco.dataset = {"images": images, "annotations": [], "categories": [
        {"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}]}
    coco.createIndex()
    assert len(coco.loadRes(results).anns) == len(results)
    assert [os.path.basename(p) for p in pngs] == ["000000000007_pred.png", "000000000042_pred.png"]
    assert [Image.open(p).size for p in pngs] == [(70, 90), (150, 100)]
    lines = [l for l in capsys.readouterr().out.splitlines() if "detections" in l]
    assert len(lines) == 2 and lines[0].startswith(paths[0]) and "(top: " in lines[0]


def test_detect_returns_original_resolution(detector):
    image = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    dets = detector.detect(image)
    num = len(dets["scores"])
    assert num > 0 and dets["masks"].shape == (num, 60, 80) and dets["boxes"].shape == (num, 4)
    assert [NAMES[c] for c in dets["classes"]] == dets["class_names"]
    assert [IDS[c] for c in dets["classes"]] == list(dets["category_ids"])
    assert np.all(np.diff(dets["scores"]) <= 0)


def test_image_ids_from_names_or_indices():
    assert inference.image_ids_for(["a/000000000042.jpg", "b/7.png"]) == [42, 7]
    assert inference.image_ids_for(["a/cat.jpg", "b/7.png"]) == [0, 1]


def test_list_images_is_recursive_and_names_what_is_missing(image_dir):
    (image_dir / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image_dir / "sub" / "deep.png")
    listed = list_images([str(image_dir), str(image_dir / "notes.txt")])
    assert [os.path.basename(p) for p in listed] == ["000000000007.jpg", "000000000042.png", "deep.png",
                                                      "notes.txt"]
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        list_images([str(image_dir / "missing.jpg")])


def test_an_unreadable_image_is_named_and_the_others_are_still_done(detector, image_dir, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        inference.load_image(str(bad))
    out = tmp_path / "out"
    out.mkdir()
    (out / inference.RESULTS_FILE).write_text("[\"stale results of an earlier run\"]")
    good = sorted(str(p) for p in image_dir.iterdir())[:1]
    results_path, pngs, failures = detector.run_on_files([str(bad)] + good, str(out))
    assert [path for path, _ in failures] == [str(bad)] and len(pngs) == 1
    assert "broken.jpg: not a JPEG/PNG" in capsys.readouterr().err
    images = json.load(open(out / inference.IMAGES_FILE))
    assert [entry["file_name"] for entry in images] == good
    assert "stale" not in open(results_path).read()
