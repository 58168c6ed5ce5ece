"""README "Train on your own images", run as written on shapes that ``dataset/`` writes as LabelMe files.

The commands are read from the README's code block; only the paths are filled in and the training gets CI-sized
flags (128 px, 1 epoch of 2 steps). ``--pretrained`` fetches the registered torchvision COCO weights from a
server on 127.0.0.1: the full-size ``maskrcnn_resnet50_fpn`` state of ``tests/fixtures/torchvision`` (seeded
random weights with calibrated BatchNorm statistics, 91 classes), so the run fine-tunes a real-size model whose
class-specific predictors start fresh for the 3 shape classes. The conversion of the other three source formats
is the round trip of ``tests/dataset/test_convert.py``.
"""
import json
import logging
import os
import re
import shlex
import sys
import time

import numpy as np
import pytest

from dataset.make_synthetic_shapes import make_dataset, render, write_format

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "torchvision")
SECTION = "## Train on your own images"
CI_TRAINING = ["--image_size", "128", "128", "--epochs", "1", "--steps_per_epoch", "2", "--train_batch_size", "2",
               "--eval_batch_size", "2", "--no-tensorboard"]


def walkthrough_commands():
    """The ``python ...`` lines of the README section's code block, comments cut, as argument lists."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index(SECTION):]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.startswith("python ")]


def test_the_readme_walks_from_labelme_to_an_export():
    steps = [(argv[1], argv[2]) if argv[1] != "-m" else (argv[2], None) for argv in walkthrough_commands()]
    assert steps == [("dataset.convert", None), ("main.py", "train"), ("main.py", "eval"), ("main.py", "infer"),
                     ("main.py", "report"), ("main.py", "export")]


@pytest.fixture
def served_coco_weights(tmp_path, monkeypatch):
    """The registry's torchvision COCO entry served from 127.0.0.1 (an ``.npz`` of the fixture state)."""
    from mrcnn_tf2.testing import torchvision_detector_state
    from weights_server import serve_state_as

    server = serve_state_as(monkeypatch, tmp_path / "home", "torchvision-maskrcnn-resnet50-fpn-coco",
                            torchvision_detector_state(FIXTURES))
    yield server
    server.close()


def _user_folders(tmp_path):
    """``my_photos/`` (12 LabelMe-labelled shapes images) and ``new_photos/`` (2 unlabelled ones)."""
    from PIL import Image

    paths = make_dataset(str(tmp_path / "generated"), num_train=10, num_val=2, image_size=128, seed=3,
                         empty_fraction=0.0, occlusion=False)
    labelme = write_format(paths, "labelme", str(tmp_path / "my_photos"))
    new = tmp_path / "new_photos"
    new.mkdir()
    rng = np.random.default_rng(7)
    for name in ("a.png", "b.png"):
        Image.fromarray(render(rng, 128, 128, 3)[0]).save(new / name)
    return labelme, str(new)


def _filled(argv, labelme, tmp_path, new_photos):
    """A README line with the user's folders replaced by the test's (and CI-sized training)."""
    names = {"my_photos/": labelme, "my_set": str(tmp_path / "my_set"), "my_run": str(tmp_path / "my_run"),
             "new_photos/": new_photos + "/", "new_photos/a.png": os.path.join(new_photos, "a.png"),
             "my_model": str(tmp_path / "my_model")}
    out = [names.get(a, a) for a in argv]
    return out + CI_TRAINING if out[1:3] == ["main.py", "train"] else out


@pytest.mark.timeout(1200)
def test_walkthrough_commands_run_on_labelme_shapes(served_coco_weights, tmp_path, capsys, caplog):
    import main
    from dataset import convert

    labelme, new_photos = _user_folders(tmp_path)
    caplog.set_level(logging.WARNING, logger="mrcnn_tf2.torchvision_import")
    printed = {}
    for argv in walkthrough_commands():
        argv = _filled(argv, labelme, tmp_path, new_photos)
        start = time.perf_counter()
        code = convert.main(argv[3:]) if argv[1] == "-m" else main.main(argv[2:])
        assert code in (0, None), argv
        printed[argv[2] if argv[1] != "-m" else "convert"] = capsys.readouterr().out
        print(f"{' '.join(argv[1:3])}: {time.perf_counter() - start:.0f} s", file=sys.__stderr__)

    # convert: the classes, stable ids, and the split
    assert "categories: 1 circle, 2 square, 3 triangle" in printed["convert"]
    my_set = tmp_path / "my_set"
    with open(my_set / "annotations" / "instances_train.json") as f:
        train = json.load(f)
    with open(my_set / "annotations" / "instances_val.json") as f:
        val = json.load(f)
    assert len(train["images"]) + len(val["images"]) == 12 and len(val["images"]) >= 2
    # train: the COCO weights fetched once, the predictors fresh for 3 classes, the recipe's fields
    assert len(served_coco_weights.requests) == 1
    assert any("91 classes, the model 4" in r.getMessage() for r in caplog.records), caplog.text
    run = tmp_path / "my_run"
    with open(run / "config.json") as f:
        config = json.load(f)
    assert config["model"] == "mask-rcnn-finetune" and config["data"]["augment"] == "lsj"
    assert config["task"]["preset"] == "torchvision" and config["task"]["lr"] == 2.5e-3
    assert os.path.isdir(run / "model_best") and os.path.isdir(run / "checkpoint-latest")  # validated at the end
    # eval: the COCO table of the val split (this model, 2 steps from seeded random weights, finds nothing yet)
    assert re.search(r"AP50\s+\d\.\d{4}\s+\d\.\d{4}", printed["eval"]) and "report: " in printed["eval"]
    # infer: a drawing per photo and the detections; the report; the SavedModel, verified against Keras
    assert sorted(os.listdir(run / "predictions")) == ["a_pred.png", "b_pred.png", "detections.json", "images.json"]
    assert os.path.isfile(run / "report.html") and os.path.isfile(tmp_path / "my_model" / "saved_model.pb")
    assert "verif" in printed["export"], printed["export"]
