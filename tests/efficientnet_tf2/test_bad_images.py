"""EfficientNet on a folder of real-world bad files: train, eval and infer finish and name every bad file.

The corpus (``tests/bad_files.py``): truncated, corrupt, zero-byte, text-as-image and cut PNG
files are reported in one summary per split and left out (steps count the usable files);
CMYK, gray, RGBA, a PNG named ``.jpg``, 1x1 and very thin images are used like any other; a decompression bomb
in ``val`` (a 64 KB PNG declaring 23000x23000) is refused by its header in train's check, eval and infer.
``--strict-data`` refuses the run before its first step.
"""
import json
import logging
import os

import pytest

import bad_files
import main as entry
from dataset.make_synthetic_imagefolder import make_imagefolder

RUN = ["--model", "efficientnet-b0", "--image-size", "32", "-b", "4", "--seed", "0"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad_imagefolder"))
    make_imagefolder(root, num_classes=2, train_per_class=4, val_per_class=2, image_size=32)
    classes = sorted(os.listdir(os.path.join(root, "train")))
    bad_train = bad_files.write(os.path.join(root, "train", classes[0]), bad_files.bad_files())
    bad_files.write(os.path.join(root, "train", classes[1]), bad_files.odd_but_good_files())
    two_bad = dict(list(bad_files.bad_files().items())[:2])
    two_bad["zz_bomb.png"] = (bad_files.bomb_png(), bad_files.BOMB_REASON)  # refused by its header, never decoded
    bad_val = bad_files.write(os.path.join(root, "val", classes[1]), two_bad)
    return {"root": root, "bad_train": bad_train, "bad_val": bad_val, "classes": classes}


def _records(work):
    with open(os.path.join(work, "raport.json")) as f:
        return [json.loads(line[5:]) for line in f if line.startswith("DLLL ")]


def test_training_names_each_bad_file_skips_it_and_counts_steps_from_the_good_ones(corpus, tmp_path, caplog):
    work = str(tmp_path / "run")
    with caplog.at_level(logging.WARNING):
        assert entry.main(["train", corpus["root"], "--workspace", work, "--epochs", "1", *RUN]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "common.io.data_check"]
    assert len(warnings) == 2, warnings  # one summary per split
    train_line = next(w for w in warnings if "/train are unusable" in w)
    assert train_line.startswith("5 of 19 images")
    for path, (_, reason) in zip(corpus["bad_train"], bad_files.bad_files().values()):
        assert f"{path}: {reason}" in train_line
    assert "3 of 7 images" in next(w for w in warnings if "/val are unusable" in w)
    assert bad_files.BOMB_REASON in next(w for w in warnings if "/val are unusable" in w)
    with open(os.path.join(work, "unusable_train.tsv")) as f:
        assert sorted(line.split("\t")[0] for line in f) == sorted(corpus["bad_train"])
    params = next(r["data"] for r in _records(work) if r.get("step") == "PARAMETER" and "steps_per_epoch" in r["data"])
    assert params["steps_per_epoch"] == 14 // 4  # 8 generated + 6 odd-but-good files
    assert os.path.isdir(os.path.join(work, "model_best"))

    assert entry.main(["eval", corpus["root"], "--workspace", work]) == 0
    infer_dir = str(tmp_path / "predictions")
    assert entry.main(["infer", os.path.join(corpus["root"], "train"), "--workspace", work,
                       "--output-dir", infer_dir]) == 1  # non-zero: some files failed, the others are done
    with open(os.path.join(infer_dir, "predictions.json")) as f:
        predicted = {entry_["file"] for entry_ in json.load(f)}
    assert len(predicted) == 14 and not predicted & set(corpus["bad_train"])


def test_infer_names_each_bad_file_and_finishes_the_folder(corpus, tmp_path, capsys):
    work = str(tmp_path / "run")
    assert entry.main(["train", corpus["root"], "--workspace", work, "--epochs", "1", "--no-eval", *RUN]) == 0
    folder = os.path.join(corpus["root"], "val")
    capsys.readouterr()
    assert entry.main(["infer", folder, "--workspace", work, "--output-dir", str(tmp_path / "p")]) == 1
    captured = capsys.readouterr()
    for path in corpus["bad_val"]:
        assert f"error: {path}: " in captured.err
    assert "error: 3 of 7 images could not be processed" in captured.err
    assert "zz_bomb.png: declares 23000x23000 pixels" in captured.err
    assert captured.out.count("  1. ") == 4  # the four good images were classified


def test_strict_data_fails_before_the_first_step(corpus, tmp_path, capsys):
    work = str(tmp_path / "strict")
    assert entry.main(["train", corpus["root"], "--workspace", work, "--epochs", "1", "--strict-data", *RUN]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 5 of 19 images") and "--strict-data" in err[0]
    assert not os.path.exists(os.path.join(work, "checkpoint-latest"))
    assert not [r for r in _records(work) if "train.loss" in r.get("data", {})]
