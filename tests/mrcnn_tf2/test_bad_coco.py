"""Mask R-CNN on a COCO set with every kind of bad entry: train, eval and infer finish, each named.

Added to a generated shapes set (which already has a crowd RLE, a zero-area box and images
without annotations): an image whose file is missing, a truncated JPEG, an image of another
size than listed, file names leaving the image folder (``../../../../etc/passwd``, an absolute path: refused
by name, never opened), a decompression bomb PNG (refused by its header), a polygon with fewer than 3 points (it used to crash pycocotools at the end of
training), an unknown category, a negative and a non-finite box, an out-of-image box, and
gray / CMYK images that must be used. ``--strict-data`` fails before the first step.
"""
import json
import logging
import os

import pytest
from PIL import Image

import bad_files
import main as entry
from dataset.make_synthetic_shapes import make_dataset

TINY = ["--image-size", "64", "64", "--config", "backbone.width_multiplier=0.25", "rpn.pre_nms_topk_train=300",
        "rpn.post_nms_topk_train=100", "rpn.pre_nms_topk_test=100", "rpn.post_nms_topk_test=50",
        "roi_sampler.batch_size_per_image=32", "detection.max_detections=20"]
RUN = ["--model", "mask-rcnn", "--epochs", "1", "--steps-per-epoch", "2", "-b", "2", "--eval-batch-size", "2",
       "--seed", "1", *TINY]
SIZE = 64


def _spoil(annotation_file, image_dir, prefix, first_id):
    """Adds bad images and annotations; returns {what: expected fragment of the report}."""
    with open(annotation_file) as f:
        coco = json.load(f)
    image_id, ann_id = 900000 + first_id, 900000 + first_id
    cat = coco["categories"][0]["id"]
    good_image = coco["images"][0]
    expected = {}

    def add_image(name, data=None, size=(SIZE, SIZE)):
        nonlocal image_id
        image_id += 1
        if data is not None:
            with open(os.path.join(image_dir, name), "wb") as f:
                f.write(data)
        coco["images"].append({"id": image_id, "file_name": name, "height": size[0], "width": size[1]})
        return image_id

    def add_annotation(image, why, **fields):
        nonlocal ann_id
        ann_id += 1
        coco["annotations"].append({"id": ann_id, "image_id": image, "category_id": cat, "bbox": [4, 4, 20, 20],
                                    "area": 400.0, "iscrowd": 0, **fields})
        if why:
            expected[f"annotation {ann_id}"] = why

    missing = add_image(f"{prefix}_missing.jpg")
    expected[f"{prefix}_missing.jpg"] = "image file not found"
    add_annotation(missing, None)
    truncated = add_image(f"{prefix}_truncated.jpg", bad_files.bad_files(SIZE)["truncated.jpg"][0])
    expected[f"{prefix}_truncated.jpg"] = "truncated JPEG"
    add_annotation(truncated, None)
    odd = bad_files.odd_but_good_files(SIZE)
    for name in ("gray.jpg", "cmyk.jpg"):
        add_annotation(add_image(f"{prefix}_{name}", odd[name]), None)
    resized = add_image(f"{prefix}_wrong_size.jpg", bad_files.encode(bad_files.noise_image(SIZE, SIZE - 8), "JPEG"))
    expected[f"{prefix}_wrong_size.jpg"] = "the annotations say 64x64"
    add_annotation(resized, None)
    add_annotation(good_image["id"], "polygon with fewer than 3 points", segmentation=[[5, 5, 25, 5]])
    add_annotation(good_image["id"], "unknown category id 4242", category_id=4242)
    add_annotation(good_image["id"], "negative width or height", bbox=[4, 4, -3, 9])
    add_annotation(good_image["id"], "not 4 finite numbers", bbox=[4, 4, "inf", 9])
    add_annotation(good_image["id"], None, bbox=[SIZE + 10, SIZE + 10, 5, 5])  # outside: dropped, counted
    for name, why in (("../../../../etc/passwd", "leaves the image folder"), ("/etc/hostname", "absolute path")):
        add_annotation(add_image(name), None)  # never opened: refused by name
        expected[f"image id {image_id}"] = why
    add_annotation(add_image(f"{prefix}_bomb.png", bad_files.bomb_png(), size=(23000, 23000)), None)
    expected[f"{prefix}_bomb.png"] = bad_files.BOMB_REASON
    with open(annotation_file, "w") as f:
        json.dump(coco, f)
    return expected


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad_coco"))
    paths = make_dataset(root, num_train=6, num_val=3, image_size=SIZE, seed=0, empty_fraction=0.2,
                         crowd=True, zero_area=True)
    expected = {split: _spoil(paths[f"{split}_annotations"], paths[f"{split}_images"], split, i * 100)
                for i, split in enumerate(("train", "val"))}
    return {"paths": paths, "expected": expected}


def _warnings(caplog, name="common.io.data_check"):
    return [r.getMessage() for r in caplog.records if r.name == name and r.levelno >= logging.WARNING]


def test_train_and_eval_name_every_bad_entry_and_finish(corpus, tmp_path, caplog, capsys):
    work, paths = str(tmp_path / "run"), corpus["paths"]
    with caplog.at_level(logging.INFO):
        assert entry.main(["train", "--data-dir", paths["root"], "--workspace", work, *RUN]) == 0
    lines = {split: open(os.path.join(work, f"unusable_{split}.tsv")).read() for split in ("train", "val")}
    for split, expected in corpus["expected"].items():
        assert lines[split].count("\n") == len(expected), lines[split]
        for where, why in expected.items():
            assert any(where in line and why in line for line in lines[split].splitlines()), (where, why)
    for text in lines.values():  # /etc/passwd was never opened: none of its bytes, plain or hex, anywhere
        assert "root:" not in text and "72 6f 6f 74" not in text
    summaries = _warnings(caplog)
    assert len(summaries) == 2 and all("are unusable" in s for s in summaries)
    scored = [r.getMessage() for r in caplog.records if "COCO evaluation ground truth" in r.getMessage()]
    assert scored and "1 box(es) outside the image" in scored[0] and "4 unusable annotation(s)" in scored[0]
    assert os.path.isdir(os.path.join(work, "model_best")) and os.path.isdir(os.path.join(work, "checkpoint-latest"))

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert entry.main(["eval", "--workspace", work, "--data-dir", paths["root"]]) == 0
    assert "bbox/AP50" in capsys.readouterr().out

    out_dir = str(tmp_path / "predictions")
    assert entry.main(["infer", paths["val_images"], "--workspace", work, "--output-dir", out_dir]) == 1
    err = capsys.readouterr().err
    assert "val_truncated.jpg: truncated JPEG" in err and "could not be processed" in err
    assert f"val_bomb.png: declares 23000x23000 pixels" in err  # refused by its header, never decoded
    with open(os.path.join(out_dir, "images.json")) as f:
        done = [os.path.basename(i["file_name"]) for i in json.load(f)]
    assert "val_gray.jpg" in done and "val_cmyk.jpg" in done and "val_truncated.jpg" not in done


def test_strict_data_fails_before_the_first_step(corpus, tmp_path, capsys):
    work = str(tmp_path / "strict")
    assert entry.main(["train", "--data-dir", corpus["paths"]["root"], "--workspace", work, "--strict-data",
                       *RUN]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "instances_train.json are unusable" in err[-1], err
    assert not os.path.exists(os.path.join(work, "checkpoint-latest"))
