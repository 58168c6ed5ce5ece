"""``main.py train|eval|infer|export|info --model mask-rcnn`` end to end on synthetic shapes.

A deliberately tiny model (quarter-width ResNet-50, 128x128 inputs, few proposals)
trained for a few steps: this checks the wiring of every mode and its outputs,
not accuracy (see test_convergence.py for that).
"""
import glob
import json
import os

import numpy as np
import pytest

import main as cli
from common.io.logger import read_dllogger
from custom_ops import loader as custom_ops_loader
from dataset.make_synthetic_shapes import make_dataset

TINY = ["--image_size", "128", "128", "--config", "backbone.width_multiplier=0.25", "rpn.pre_nms_topk_train=300",
        "rpn.post_nms_topk_train=100", "rpn.pre_nms_topk_test=100", "rpn.post_nms_topk_test=50",
        "roi_sampler.batch_size_per_image=32", "detection.max_detections=20"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("mrcnn_cli")
    paths = make_dataset(str(root / "shapes"), num_train=8, num_val=4, image_size=128, seed=0)
    model_dir = str(root / "run")
    argv = ["train", "--model", "mask-rcnn", "--data_dir", paths["root"], "--model_dir", model_dir,
            "--epochs", "1", "--steps_per_epoch", "3", "--train_batch_size", "2", "--eval_batch_size", "2",
            "--finetune_bn", "--log_every", "1", "--log_warmup_steps", "1", "--seed", "1", *TINY]
    assert cli.main(argv) == 0
    return paths, model_dir


def test_train_writes_checkpoints_meta_and_coco_metrics(trained):
    _, model_dir = trained
    for name in ("checkpoint-latest", "model_best", "config.json", "raport.json"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    records = read_dllogger(os.path.join(model_dir, "raport.json"))
    final = [r for r in records if r["step"] == []][-1]["data"]
    keys = [f"val.{t}/{s}" for t in ("bbox", "segm") for s in
            ("AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl")]
    assert all(k in final for k in keys)
    assert any("train.loss" in r["data"] for r in records if isinstance(r["step"], list) and len(r["step"]) == 2)
    per_class = [r["data"] for r in records if r["step"] == "PER_CLASS"][-1]  # the log holds per-class AP too
    assert {f"val.{t}/{m}/{c}" for t in ("bbox", "segm") for m in ("AP", "AP50", "AP75", "AR100")
            for c in ("circle", "square", "triangle")} <= set(per_class)
    losses = ("loss", "rpn_score_loss", "rpn_box_loss", "fast_rcnn_class_loss", "fast_rcnn_box_loss", "mask_loss")
    assert all(np.isfinite(final[f"val.{name}"]) for name in losses)  # validation loss, as EfficientNet's
    config = json.load(open(os.path.join(model_dir, "config.json")))
    assert config["data"]["class_names"] == ["background", "circle", "square", "triangle"]
    assert config["model"] == "mask-rcnn" and config["task"]["model"]["backbone"]["width_multiplier"] == 0.25


def test_train_leaves_pictures_tensorboard_and_a_report(trained):
    """Per-class AP, PR curves, the worst images (4 validation images: 4 tiles), curves, TensorBoard events
    and report.html with the per-class and worst sections."""
    from PIL import Image

    _, model_dir = trained
    worst = sorted(glob.glob(os.path.join(model_dir, "eval", "worst", "*.png")))
    pictures = [os.path.join(model_dir, "curves.png"), *worst,
                *(os.path.join(model_dir, "eval", n) for n in ("per_class_ap.png", "pr_curves.png"))]
    assert len(worst) == 4
    for path in pictures:
        with Image.open(path) as image:
            assert image.format == "PNG" and os.path.getsize(path) > 1000, path
    assert glob.glob(os.path.join(model_dir, "tensorboard", "events.out.tfevents.*"))
    page = open(os.path.join(model_dir, "report.html"), encoding="utf-8").read()
    assert all(f'<section id="{s}">' in page for s in ("summary", "curves", "per-class", "pr-curves", "worst"))


def test_eval_infer_export(trained, tmp_path, capsys):
    paths, model_dir = trained
    common = ["--model", "mask-rcnn", "--model_dir", model_dir]
    assert cli.main(["eval", *common, "--data_dir", paths["root"], "--eval_batch_size", "2"]) == 0
    assert "segm" in capsys.readouterr().out
    images = sorted(glob.glob(os.path.join(paths["val_images"], "*")))[:2]
    out = str(tmp_path / "pred")
    assert cli.main(["infer", *common, *images, "--output_dir", out, "--score_threshold", "0.0"]) == 0
    assert len(glob.glob(os.path.join(out, "*_pred.png"))) == 2
    assert isinstance(json.load(open(os.path.join(out, "detections.json"))), list)
    export_dir = str(tmp_path / "saved")
    assert cli.main(["export", *common, "--export_dir", export_dir, "--verify", images[0]]) == 0
    assert os.path.isfile(os.path.join(export_dir, "saved_model.pb"))
    # export switches the custom ops off for itself only: the rest of the process gets them back
    assert custom_ops_loader.enabled() == (os.environ.get("MRCNN_NO_CUSTOM_OPS", "0") in ("", "0"))


def _printed_metrics(out: str) -> dict:
    """The 12 bbox + 12 segm COCO numbers of the JSON that eval prints last."""
    printed = json.loads(out[out.rindex("{"):])
    return {k: v for k, v in printed.items() if "bbox/" in k or "segm/" in k}


def test_eval_and_infer_under_onnxruntime_match_tf(trained, tmp_path, capsys):
    """--runtime onnxruntime swaps the network only: same COCO numbers and the same detections as tf."""
    pytest.importorskip("onnxruntime", reason="the onnx extra (tf2onnx, onnx, onnxruntime) is not installed")
    paths, model_dir = trained
    common = ["--model", "mask-rcnn", "--model_dir", model_dir]
    evaluate = ["eval", *common, "--data_dir", paths["root"], "--eval_batch_size", "2"]
    assert cli.main(evaluate) == 0
    want = _printed_metrics(capsys.readouterr().out)
    assert cli.main([*evaluate, "--runtime", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "converting the network to ONNX" in out
    got = _printed_metrics(out)
    assert len(want) == 24 and got.keys() == want.keys()
    assert max(abs(got[k] - want[k]) for k in want) <= 1e-3, (got, want)
    images = sorted(glob.glob(os.path.join(paths["val_images"], "*")))[:2]
    detections = {}
    for runtime in ("tf", "onnxruntime"):
        out = str(tmp_path / runtime)
        assert cli.main(["infer", *common, *images, "--output_dir", out, "--runtime", runtime]) == 0
        detections[runtime] = json.load(open(os.path.join(out, "detections.json")))
    tf_dets, ort_dets = detections["tf"], detections["onnxruntime"]
    assert len(ort_dets) == len(tf_dets) > 0
    assert [d["category_id"] for d in ort_dets] == [d["category_id"] for d in tf_dets]
    assert max(abs(a - b) for g, w in zip(ort_dets, tf_dets) for a, b in zip(g["bbox"], w["bbox"])) <= 0.5


def test_info_reports_parameter_counts(capsys):
    assert cli.main(["info", "--model", "mask-rcnn", *TINY]) == 0
    out = capsys.readouterr().out
    info = json.loads(out[out.index("{"):])
    assert info["input_size"] == [128, 128] and 0 < info["trainable_params"] < info["total_params"]


def test_unknown_override_is_a_clear_error(capsys):
    assert cli.main(["info", "--model", "mask-rcnn", "--config", "rpn.nope=1"]) == 2
    assert "Unknown config field 'task.model.rpn.nope'" in capsys.readouterr().err


def test_onnx_export_errors_name_the_fix(trained, tmp_path, capsys):
    _, model_dir = trained
    common = ["export", "--model", "mask-rcnn", "--model_dir", model_dir, "--format", "onnx",
              "--export_dir", str(tmp_path)]
    assert cli.main([*common, "--opset", "13"]) != 0
    assert "needs opset >= 17" in capsys.readouterr().err
    assert cli.main([*common, "--onnx-masks", "rle"]) == 2
    assert "invalid choice: 'rle'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "model.onnx")


def test_infer_under_onnxruntime_refuses_the_per_image_canvas_before_any_work(trained, tmp_path, capsys):
    paths, model_dir = trained
    image = sorted(glob.glob(os.path.join(paths["val_images"], "*")))[0]
    out = str(tmp_path / "pred")
    argv = ["infer", "--model", "mask-rcnn", "--model_dir", model_dir, "--preset", "torchvision",
            "--runtime", "onnxruntime", "--output_dir", out, image]
    assert cli.main(argv) != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "own canvas" in errors[0] and "--runtime tf" in errors[0], errors
    assert not os.path.exists(out)


def test_no_eval_trains_from_annotations_and_images_alone(tmp_path):
    """``--train-annotations/--train-images`` need no ``--data-dir``, and ``--no-eval`` no validation data; with
    ``--freeze-backbone`` only FPN, RPN and heads train (logged)."""
    paths = make_dataset(str(tmp_path / "shapes"), num_train=4, num_val=1, image_size=64)
    work = str(tmp_path / "run")
    assert cli.main(["train", "--model", "mask-rcnn", "--train-annotations", paths["train_annotations"],
                     "--train-images", paths["train_images"], "--no-eval", "--workspace", work, "--epochs", "1",
                     "-b", "2", "--steps-per-epoch", "1", "--freeze-backbone", *TINY]) == 0
    config = json.load(open(os.path.join(work, "config.json")))
    assert config["data"]["class_names"][1:] and config["data"]["eval_file"] is None
    frozen = [r["data"] for r in read_dllogger(os.path.join(work, "raport.json")) if "backbone_frozen" in r["data"]]
    assert frozen and frozen[0]["backbone_frozen"] is True and 0 < frozen[0]["trainable_params"]


def test_val_split_holds_out_images_once_and_eval_scores_them(tmp_path, capsys):
    """``--val-split 0.5`` on one annotation file: half the images (seeded, by image) held out and written into
    the workspace; a resumed run keeps that split whatever the flags say; eval scores the held-out images. (The
    training runs with ``--augmentation lsj --color-jitter``: the tf.data path of tests/mrcnn_tf2/data/test_augment.py.)"""
    paths = make_dataset(str(tmp_path / "shapes"), num_train=4, num_val=1, image_size=64)
    work = str(tmp_path / "run")
    argv = ["train", "--model", "mask-rcnn", "--train-annotations", paths["train_annotations"], "--train-images",
            paths["train_images"], "--val-split", "0.5", "--workspace", work, "-b", "2", "--steps-per-epoch", "1",
            "--seed", "3", "--lr", "0.0001", "--no-eval", "--augmentation", "lsj", "--color-jitter", *TINY]
    assert cli.main([*argv[:-len(TINY)], "--epochs", "1", *TINY]) == 0
    train, val = (json.load(open(os.path.join(work, "val_split", f"instances_{s}.json"))) for s in ("train", "val"))
    ids = [{i["id"] for i in part["images"]} for part in (train, val)]
    assert len(ids[0]) == len(ids[1]) == 2 and not ids[0] & ids[1]
    assert all(a["image_id"] in ids[1] for a in val["annotations"])
    assert "2 of 4 images" in capsys.readouterr().out
    resumed = [*argv[:-len(TINY)], "--epochs", "2", "--resume", work, *TINY]
    resumed[resumed.index("--seed") + 1] = "9"  # another seed would draw another split: the run's own is kept
    assert cli.main(resumed) == 0
    assert {i["id"] for i in json.load(open(os.path.join(work, "val_split", "instances_val.json")))["images"]} == ids[1]
    assert cli.main(["eval", "--workspace", work]) == 0
    assert "bbox/AP" in capsys.readouterr().out
