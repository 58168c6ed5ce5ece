"""``--runtime onnxruntime``: eval, infer and benchmark of an EfficientNet checkpoint through onnxruntime.

One small B0 (32 px, 4 classes) is trained for 3 epochs through ``main.py``; the same checkpoint is then
evaluated and run by both runtimes, which see the same preprocessed pixels.
"""
import json
import os
import sys

import numpy as np
import pytest

import main as cli
from dataset.make_synthetic_imagefolder import make_imagefolder

pytest.importorskip("onnxruntime", reason="the [onnx] extra (tf2onnx, onnx, onnxruntime) is not installed")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(data root, workspace)`` of a 3-epoch B0 run (Adam) with 100 validation images."""
    root = tmp_path_factory.mktemp("ort")
    data, workspace = str(root / "data"), str(root / "run")
    make_imagefolder(data, num_classes=4, train_per_class=40, val_per_class=25, image_size=40, seed=2)
    argv = ["train", "--model", "efficientnet-b0", data, "--workspace", workspace, "--image-size", "32",
            "--epochs", "4", "-b", "16", "--optimizer", "adam", "--lr", "0.002", "--lr-batch", "16", "--warmup", "1",
            "--mixup", "0", "--augmentation", "none", "--bn-momentum", "0.9", "--seed", "3", "--log-every", "100"]
    assert cli.main(argv) == 0
    return data, workspace


def _eval(capsys, data, workspace, *extra):
    assert cli.main(["eval", "--model", "efficientnet-b0", data, "--workspace", workspace, "-b", "25", *extra]) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):out.rindex("}") + 1])


def test_eval_gives_the_same_accuracy_with_both_runtimes(trained, capsys, caplog):
    data, workspace = trained
    tf_metrics = _eval(capsys, data, workspace)
    with caplog.at_level("INFO"):
        ort_metrics = _eval(capsys, data, workspace, "--runtime", "onnxruntime")
    assert "exported the loaded model to ONNX" in caplog.text and "runtime onnxruntime" in caplog.text
    # 100 images: at most one flip per 1000 allowed, so none here
    for key in ("val.top1", "val.top5"):
        assert ort_metrics[key] == tf_metrics[key], (key, tf_metrics, ort_metrics)
    assert abs(ort_metrics["val.loss"] - tf_metrics["val.loss"]) < 1e-4


def test_probabilities_agree_to_float_noise(trained):
    """Keras and the onnxruntime stand-in on every validation batch: max |delta p| (printed) <= 1e-5."""
    import tensorflow as tf

    from common import cli as flags
    from efficientnet_tf2 import data as data_lib
    from efficientnet_tf2.family import EfficientNetFamily

    data, workspace = trained
    invocation = flags.parse(["eval", "--model", "efficientnet-b0", data, "--workspace", workspace])
    family, experiment = invocation.family, invocation.experiment
    model = family.load_model(experiment, os.path.join(workspace, "model_best"))
    runner = family.runtime_model(experiment, model, None, "onnxruntime")
    assert isinstance(family, EfficientNetFamily)
    worst, flips, count, predicted = 0.0, 0, 0, set()
    for images, _ in data_lib.build_dataset(data, "val", 32, 25, training=False):
        want = tf.nn.softmax(model(images, training=False)).numpy()
        got = tf.nn.softmax(runner(images)).numpy()
        worst = max(worst, float(np.abs(got - want).max()))
        flips += int(np.sum(got.argmax(-1) != want.argmax(-1)))
        count += len(got)
        predicted |= set(want.argmax(-1).tolist())
    print(f"onnxruntime vs TF on {count} images: max |delta p| {worst:.2e}, top-1 flips {flips}")
    assert count == 100 and flips == 0 and worst <= 1e-5
    assert len(predicted) > 1  # the checkpoint tells images apart: the top-1 agreement means something


def test_infer_prints_the_same_top5_and_reuses_an_exported_file(trained, capsys, tmp_path):
    data, workspace = trained
    images = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(data, "val")) for f in fs)[:3]

    def infer(*extra):
        argv = ["infer", "--model", "efficientnet-b0", "--workspace", workspace, "--output-dir", str(tmp_path),
                *extra, *images]
        assert cli.main(argv) == 0
        lines = capsys.readouterr().out.splitlines()
        return [line.split()[1] for line in lines if line.strip()[:2] in ("1.", "2.", "3.", "4.", "5.")]

    want = infer()
    assert len(want) == 3 * 4  # 4 classes: top-4 of each image
    assert infer("--runtime", "onnxruntime") == want
    exported = str(tmp_path / "model.onnx")
    assert cli.main(["export", "--model", "efficientnet-b0", "--workspace", workspace, "--format", "onnx",
                     "--export-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert infer("--onnx-file", exported) == want


def test_missing_onnxruntime_is_a_one_line_error_naming_the_extra(trained, monkeypatch, capsys):
    data, workspace = trained
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    argv = ["eval", "--model", "efficientnet-b0", data, "--workspace", workspace, "--runtime", "onnxruntime"]
    assert cli.main(argv) != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "onnxruntime is not installed" in errors[0] and ".[onnx]" in errors[0], errors


def _error_of(capsys, argv) -> str:
    assert cli.main(argv) != 0
    return capsys.readouterr().err


def test_runtime_flag_errors(trained, capsys):
    data, workspace = trained
    base = ["eval", "--model", "efficientnet-b0", data, "--workspace", workspace]
    assert "takes one value" in _error_of(capsys, base + ["--runtime", "tf", "--runtime", "onnxruntime"])
    assert "no such ONNX file" in _error_of(capsys, base + ["--onnx-file", os.path.join(workspace, "x.onnx")])


def test_benchmark_rows_for_both_runtimes(tmp_path, capsys):
    """One row per runtime (the table's ``runtime`` column); training has no onnxruntime row."""
    table = str(tmp_path / "table.md")
    argv = ["benchmark", "--model", "efficientnet-b0", "--runtime", "tf", "onnxruntime", "-b", "2",
            "--image-size", "32", "--warmup-steps", "1", "--iters", "2", "--num-classes", "10",
            "--log-file", str(tmp_path / "bench.json"), "--table-file", table]
    assert cli.main(argv) == 0
    rows = [line for line in open(table).read().splitlines() if "efficientnet-b0" in line]
    assert len(rows) == 2 and "| tf |" in rows[0] and "| onnxruntime |" in rows[1], rows
    assert "inference only" in _error_of(capsys, [
        "benchmark", "--kind", "training", "--model", "efficientnet-b0", "--runtime", "onnxruntime", "-b", "1",
        "--image-size", "32", "--iters", "1", "--log-file", str(tmp_path / "b2.json")])
