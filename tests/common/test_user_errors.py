"""Every user error on the command line: exit status 2, one ``error: ...`` line on stderr, no traceback.

The table holds what a new user typed (missing or empty data folders, no images, a missing
``--checkpoint``, ``--resume`` on an empty folder, unknown ``--config`` keys, out-of-range
numbers, an existing export folder) for both model families; ``--verbose`` adds the traceback.
"""
import os
import subprocess
import sys

import pytest

import main as entry
from dataset.make_synthetic_imagefolder import make_imagefolder
from dataset.make_synthetic_shapes import make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
E, M = ["--model", "efficientnet-b0"], ["--model", "mask-rcnn"]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_errors")
    folders = {name: str(root / name) for name in ("empty", "export_here", "no_images", "work")}
    for name in ("empty", "export_here", "work"):
        os.makedirs(folders[name])
    open(os.path.join(folders["export_here"], "saved_model.pb"), "w").close()
    os.makedirs(os.path.join(folders["no_images"], "train", "cat"))
    os.makedirs(os.path.join(folders["no_images"], "val", "cat"))
    folders["images"] = str(root / "imagefolder")
    make_imagefolder(folders["images"], num_classes=2, train_per_class=2, val_per_class=1, image_size=32)
    folders["coco"] = make_dataset(str(root / "coco"), num_train=2, num_val=1, image_size=32)["root"]
    folders["missing"] = str(root / "missing")
    folders["pth"] = str(root / "maskrcnn_coco.pth")
    open(folders["pth"], "wb").write(b"PK\x03\x04 not a zip archive")
    return folders


CASES = [
    # (argv with {placeholders}, words the one line must contain)
    (["train", *E, "{missing}"], ["{missing}", "ImageFolder"]),
    (["train", *E, "{empty}"], ["{empty}", "ImageFolder"]),
    (["train", *E, "{no_images}"], ["No images", "{no_images}"]),
    (["eval", *E, "{images}", "--checkpoint", "{missing}"], ["no checkpoint found at {missing}"]),
    (["train", *E, "{images}", "--resume", "{empty}", "--workspace", "{work}"], ["no checkpoint found at {empty}"]),
    (["train", *E, "{images}", "--config", "nosuchkey=3"], ["Unknown config field", "nosuchkey"]),
    (["train", *E, "{images}", "--config", "justaword"], ["name=value"]),
    (["train", *E, "{images}", "-b", "0"], ["--batch-size", "must be >= 1, received 0"]),
    (["train", *E, "{images}", "-b", "-2"], ["--batch-size", "must be >= 1, received -2"]),
    (["train", *E, "{images}", "--epochs", "0"], ["--epochs", ">= 1"]),
    (["train", *E, "{images}", "--lr", "-1"], ["--lr", "> 0"]),
    (["train", *E, "{images}", "--label-smoothing", "1.5"], ["--label-smoothing", "<= 1"]),
    (["train", *E, "{images}", "--image-size", "0"], ["--image-size"]),
    (["train", "--model", "resnet-9000", "{images}"], ["unknown --model 'resnet-9000'"]),
    (["infer", *E, "{missing}/a.jpg", "--workspace", "{work}"], ["no such image file or folder"]),
    (["export", *E, "--workspace", "{work}", "--export-dir", "{export_here}"], ["{export_here} exists", "--overwrite"]),
    (["train", *M, "--data-dir", "{missing}"], ["{missing}", "not a directory"]),
    (["train", *M, "--data-dir", "{empty}"], ["no validation annotations"]),
    (["train", *M, "--data-dir", "{coco}", "--resume", "{empty}", "--workspace", "{work}"], ["no checkpoint found"]),
    (["train", *M, "--data-dir", "{coco}", "--config", "nosuch.key=1"], ["Unknown config field"]),
    (["train", *M, "--data-dir", "{coco}", "-b", "0"], ["must be >= 1"]),
    (["train", *M, "--data-dir", "{coco}", "--init-learning-rate", "-0.1"], ["--init-learning-rate", ">= 0"]),
    (["eval", *M, "--workspace", "{empty}", "--data-dir", "{coco}"], ["no checkpoint in {empty}", "--random-weights"]),
    (["eval", *E, "{images}", "--workspace", "{missing}/typo"], ["no checkpoint in {missing}/typo (no such folder)"]),
    (["infer", *M, "--workspace", "{missing}/typo", "{images}"], ["no checkpoint in {missing}/typo"]),
    (["export", *E, "--workspace", "{empty}"], ["no checkpoint in {empty}", "--pretrained-from-file"]),
    (["train", *E, "{images}", "--lr", "inf"], ["--lr", "finite"]),
    (["train", *E, "{images}", "--lr", "nan"], ["--lr"]),
    (["train", *E, "{images}", "--config", "model=mask-rcnn"], ["--config model=mask-rcnn", "--model"]),
    (["train", *E, "{images}", "--lr-schedule", "piecewise", "--lr-boundaries", "3"], ["one rate per --lr-boundaries"]),
    (["export", *M, "--workspace", "{work}", "--export-dir", "{export_here}"], ["{export_here} exists", "--overwrite"]),
    (["fly", *E], ["unknown mode 'fly'"]),
    (["export", *E, "--random-weights", "--workspace", "{work}", "--export-dir", "{missing}/sm", "--quantize", "int8"],
     ["--quantize int8 applies to --format tflite or onnx"]),
    # refused before the model is loaded: the missing checkpoint is never reached
    (["export", *E, "--workspace", "{empty}", "--format", "onnx", "--quantize", "fp16"],
     ["--format onnx takes --quantize int8", "received fp16"]),
    (["export", "--model", "efficientnet-quant-b0", "--workspace", "{empty}", "--format", "tflite", "--quantize",
      "fp16"], ["exports to TFLite as full int8 with its trained ranges", "(--quantize int8)"]),
    (["train", "--model", "mask-rcnn-finetune", "--data-dir", "{coco}", "--workspace", "{work}"],
     ["mask-rcnn-finetune fine-tunes published weights", "--pretrained"]),
    (["infer", "--model", "mask-rcnn-torchvision", "--pretrained-from-file", "{pth}", "{images}"],
     ["{pth}", "not a readable PyTorch checkpoint"]),
    (["eval", *E, "{images}", "--workspace", "{work}", "--openvino-precision", "bf16"],
     ["--openvino-precision bf16 is for --runtime openvino", "received --runtime tf"]),
]


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(a[:4]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_a_user_error_is_one_line_and_status_2(places, capsys, argv, words):
    argv = [a.format(**places) for a in argv]
    assert entry.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for word in words:
        assert word.format(**places) in err[0], (word, err[0])


def test_a_mistyped_workspace_is_not_created(places, capsys):
    typo = os.path.join(places["missing"], "typo")
    assert entry.main(["eval", *E, places["images"], "--workspace", typo]) == 2
    assert not os.path.exists(typo)


def test_verbose_adds_the_traceback(places, capsys):
    assert entry.main(["train", *E, places["images"], "--resume", places["empty"], "--workspace", places["work"],
                       "--verbose"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: no checkpoint found")


def test_the_exit_status_of_the_process(places):
    result = subprocess.run([sys.executable, "main.py", "train", *E, places["images"], "-b", "0"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
