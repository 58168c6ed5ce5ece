"""``--runtime onnxruntime|openvino|tflite``: eval, infer, export and benchmark of an EfficientNet checkpoint.

One small B0 (32 px, 4 classes) is trained for 8 epochs through ``main.py`` (and fine-tuned for one more as
``efficientnet-quant-b0``); the same checkpoint is then evaluated and run by every runtime, which see the
same preprocessed pixels.
"""
import csv
import json
import os
import re
import sys

import numpy as np
import pytest

import main as cli
from dataset.make_synthetic_imagefolder import make_imagefolder

pytest.importorskip("onnxruntime", reason="the [onnx] extra (tf2onnx, onnx, onnxruntime) is not installed")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(data root, workspace)`` of an 8-epoch B0 run (Adam) with 100 validation images (~70 % top-1)."""
    root = tmp_path_factory.mktemp("ort")
    data, workspace = str(root / "data"), str(root / "run")
    make_imagefolder(data, num_classes=4, train_per_class=40, val_per_class=25, image_size=40, seed=2)
    argv = ["train", "--model", "efficientnet-b0", data, "--workspace", workspace, "--image-size", "32",
            "--epochs", "8", "-b", "16", "--optimizer", "adam", "--lr", "0.002", "--lr-batch", "16", "--warmup", "1",
            "--mixup", "0", "--label-smoothing", "0", "--augmentation", "none", "--bn-momentum", "0.9", "--seed", "3", "--log-every", "100"]
    assert cli.main(argv) == 0
    return data, workspace


def _eval(capsys, data, workspace, *extra, model="efficientnet-b0"):
    assert cli.main(["eval", "--model", model, data, "--workspace", workspace, "-b", "25", *extra]) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):out.rindex("}") + 1])


def test_eval_gives_the_same_accuracy_with_both_runtimes(trained, capsys, caplog):
    data, workspace = trained
    tf_metrics = _eval(capsys, data, workspace)
    with open(os.path.join(workspace, "eval", "per_class.csv")) as handle:  # per-class metrics of that eval
        rows = list(csv.DictReader(handle))
    assert sum(int(r["images"]) for r in rows) == 100 and len(rows) == 4
    assert sum(int(r["correct"]) for r in rows) == round(tf_metrics["val.top1"])  # 100 images: % = count
    from common.io.logger import read_dllogger

    logged = [r["data"] for r in read_dllogger(os.path.join(workspace, "raport.json")) if r["step"] == "PER_CLASS"][-1]
    assert logged["epoch"] == "eval" and [logged[f"val.recall/{r['class']}"] for r in rows] == [
        float(r["recall_percent"]) for r in rows]  # the log holds the same per-class numbers as the CSV
    _check_worst_images_and_report(workspace)
    with caplog.at_level("INFO"):
        ort_metrics = _eval(capsys, data, workspace, "--runtime", "onnxruntime")
    assert "exported the loaded model to ONNX" in caplog.text and "runtime onnxruntime" in caplog.text
    # 100 images: at most one flip per 1000 allowed, so none here
    for key in ("val.top1", "val.top5"):
        assert ort_metrics[key] == tf_metrics[key], (key, tf_metrics, ort_metrics)
    assert abs(ort_metrics["val.loss"] - tf_metrics["val.loss"]) < 1e-4


def _check_worst_images_and_report(workspace):
    """``eval/worst/``: 12 tiles of the lowest true-class probabilities, ascending, each a real PNG; the report
    of the run holds them."""
    from PIL import Image

    with open(os.path.join(workspace, "eval", "worst", "worst.csv")) as handle:
        rows = list(csv.DictReader(handle))
    probabilities = [float(r["true_class_probability"]) for r in rows]
    assert len(rows) == 12 and probabilities == sorted(probabilities)
    assert all(os.path.isfile(r["file"]) and "/val/" in r["file"] for r in rows)
    tiles = sorted(f for f in os.listdir(os.path.join(workspace, "eval", "worst")) if f.endswith(".png"))
    assert len(tiles) == 12
    with Image.open(os.path.join(workspace, "eval", "worst", tiles[0])) as image:
        assert image.format == "PNG" and image.width >= 160
    page = open(os.path.join(workspace, "report.html"), encoding="utf-8").read()
    assert '<section id="worst">' in page and '<section id="confusion">' in page


def _agreement(model_name, data, workspace, onnx_file=None):
    """Keras vs onnxruntime on every validation batch.

    Returns ``(images, top-1 flips, max |delta p|, classes Keras predicted, runner, Keras top-1 %)``.
    """
    import tensorflow as tf

    from common.command import cli as flags
    from efficientnet_tf2 import data as data_lib

    invocation = flags.parse(["eval", "--model", model_name, data, "--workspace", workspace])
    family, experiment = invocation.family, invocation.experiment
    model = family.load_model(experiment, os.path.join(workspace, "model_best"))
    runner = family.runtime_model(experiment, model, onnx_file, "onnxruntime")
    worst, flips, count, correct, predicted = 0.0, 0, 0, 0, set()
    for images, labels in data_lib.build_dataset(data, "val", 32, 25, training=False):
        want = tf.nn.softmax(model(images, training=False)).numpy()
        got = tf.nn.softmax(runner(images)).numpy()
        worst = max(worst, float(np.abs(got - want).max()))
        flips += int(np.sum(got.argmax(-1) != want.argmax(-1)))
        correct += int(np.sum(want.argmax(-1) == labels.numpy()))  # labels: int32 [B]
        count += len(got)
        predicted |= set(want.argmax(-1).tolist())
    print(f"{model_name}: onnxruntime vs TF on {count} images: max |delta p| {worst:.2e}, top-1 flips {flips}")
    return count, flips, worst, predicted, runner, 100.0 * correct / count


def test_probabilities_agree_to_float_noise(trained):
    """Keras and onnxruntime on every validation batch: max |delta p| (printed) <= 1e-4 (the bound of
    ``export --verify``), no flipped image."""
    data, workspace = trained
    count, flips, worst, predicted, _, _ = _agreement("efficientnet-b0", data, workspace)
    assert count == 100 and flips == 0 and worst <= 1e-4
    assert len(predicted) > 1  # the checkpoint tells images apart: the top-1 agreement means something


@pytest.fixture(scope="module")
def quantized(trained):
    """Workspace of ``efficientnet-quant-b0`` calibrated and fine-tuned (QAT) for one epoch from ``trained``.

    The LR is 0.001 per 128 images rather than the recipe's 0.0125 (an ImageNet fine-tune), which
    wrecks this 160-image, 32 px model in ten steps (top-1 26 %, measured).
    """
    data, fp32 = trained
    workspace = os.path.join(os.path.dirname(fp32), "qat")
    argv = ["train", "--model", "efficientnet-quant-b0", data, "--workspace", workspace, "--image-size", "32",
            "--epochs", "1", "-b", "16", "--lr", "0.001", "--mixup", "0", "--label-smoothing", "0",
            "--augmentation", "none", "--seed", "3", "--log-every", "100",
            "--pretrained-from-file", os.path.join(fp32, "model_best")]
    assert cli.main(argv) == 0
    return workspace


def test_quantized_model_runs_its_qdq_graph_under_onnxruntime(trained, quantized, capsys, caplog):
    """``eval --model efficientnet-quant-b0 --runtime onnxruntime`` runs the Q/DQ graph and agrees with TF.

    Not to float noise: a 1e-6 difference that crosses a rounding boundary moves an activation one int8
    step, and such steps add up over the 16 blocks, so a few images of 100 may flip here (the 64 px model
    of ``scripts/qat_check.py`` agrees on all 200); the max |delta p| is printed.
    """
    data, _ = trained
    with caplog.at_level("INFO"):
        count, flips, worst, predicted, runner, tf_top1 = _agreement("efficientnet-quant-b0", data, quantized)
    pairs = re.search(r"quantization-aware graph: onnxruntime runs its (\d+) QuantizeLinear", caplog.text)
    assert pairs and int(pairs.group(1)) >= 82, caplog.text  # at least the 82 conv/dense inputs of B0
    assert count == 100 and flips <= 5 and len(predicted) > 1, (flips, predicted)
    ort_metrics = _eval(capsys, data, quantized, "--onnx-file", runner.path, model="efficientnet-quant-b0")
    with capsys.disabled():
        print(f"QAT top-1: TF {tf_top1}, eval --runtime onnxruntime {ort_metrics['val.top1']}; "
              f"{flips} flips, max |delta p| {worst:.3f}")
    assert abs(ort_metrics["val.top1"] - tf_top1) <= flips, (tf_top1, ort_metrics)
    assert tf_top1 >= 50  # 4 classes: the quantized model still classifies


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


@pytest.mark.parametrize("runtime", ["openvino", "tflite"])
def test_eval_gives_the_same_accuracy_under_openvino_and_tflite(trained, capsys, caplog, runtime):
    """FP32 under OpenVINO (the ONNX export) and LiteRT (converted on the fly): TensorFlow's top-1 and top-5 on the
    100 validation images (the onnxruntime test's tolerance: no flip allowed here), loss to 1e-4."""
    pytest.importorskip("openvino" if runtime == "openvino" else "ai_edge_litert",
                        reason=f"the [{runtime}] extra is not installed")
    data, workspace = trained
    tf_metrics = _eval(capsys, data, workspace)
    with caplog.at_level("INFO"):
        metrics = _eval(capsys, data, workspace, "--runtime", runtime)
    assert f"runtime {'OpenVINO' if runtime == 'openvino' else 'LiteRT'}" in caplog.text
    for key in ("val.top1", "val.top5"):
        assert metrics[key] == tf_metrics[key], (key, tf_metrics, metrics)
    assert abs(metrics["val.loss"] - tf_metrics["val.loss"]) < 1e-4


def test_openvino_bf16_is_an_opt_in_close_to_fp32(trained, capsys, caplog):
    """``--openvino-precision bf16``: the plugin's bf16 arithmetic, named in the log; top-1 within 2 of the 100
    validation images and loss within 2e-2 of TensorFlow's (bf16 keeps 8 bits of mantissa)."""
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    data, workspace = trained
    tf_metrics = _eval(capsys, data, workspace)
    with caplog.at_level("INFO"):
        metrics = _eval(capsys, data, workspace, "--runtime", "openvino", "--openvino-precision", "bf16")
    assert "bf16" in caplog.text
    assert abs(metrics["val.top1"] - tf_metrics["val.top1"]) <= 2, (tf_metrics, metrics)
    assert abs(metrics["val.loss"] - tf_metrics["val.loss"]) < 2e-2, (tf_metrics, metrics)


def test_tflite_int8_export_is_verified_and_evaluated(trained, capsys, caplog, tmp_path):
    """``export --format tflite --quantize int8`` calibrated on 64 training images: ``--verify`` prints the max
    |delta p| and top-1 agreement against Keras; int8 weights (under half the float file); ``eval --tflite-file`` runs
    that file (logged) and keeps top-1 within 5 of 100 images (printed; measured 69 vs 73 on this 32 px model, and
    96.0 vs 99.0 % on the demo's 64 px B0: post-training int8 costs accuracy, RESULTS.md). (FP32 TFLite: the eval
    test above, converted on the fly.)"""
    pytest.importorskip("ai_edge_litert", reason="the [tflite] extra is not installed")
    data, workspace = trained
    images = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(data, "val")) for f in fs)[:8]
    assert cli.main(["export", "--model", "efficientnet-b0", "--workspace", workspace, "--format", "tflite",
                     "--quantize", "int8", "--calibration-images", "64", "--export-dir", str(tmp_path),
                     "--verify", *images]) == 0
    out = capsys.readouterr().out
    worst = float(re.search(r"probability difference = ([0-9.e+-]+)", out).group(1))
    assert "TFLite written" in out and "top-1 agreement" in out, out
    assert open(tmp_path / "labels.txt").read().split() == sorted(os.listdir(os.path.join(data, "val")))
    assert os.path.getsize(tmp_path / "model.tflite") < 8e6  # B0's 4.0 M float32 weights alone are 16 MB
    tf_metrics = _eval(capsys, data, workspace)
    with caplog.at_level("INFO"):
        int8_metrics = _eval(capsys, data, workspace, "--tflite-file", str(tmp_path / "model.tflite"))
    assert f"{tmp_path / 'model.tflite'}" in caplog.text and "converted the loaded model" not in caplog.text
    with capsys.disabled():
        print(f"TFLite int8 (64 calibration images): top-1 {int8_metrics['val.top1']} vs TF {tf_metrics['val.top1']}; "
              f"--verify max |delta p| {worst:.3f}")
    assert abs(int8_metrics["val.top1"] - tf_metrics["val.top1"]) <= 5, (tf_metrics, int8_metrics)


@pytest.mark.parametrize("runtime, module, extra", [("openvino", "openvino", ".[openvino]"),
                                                    ("tflite", "ai_edge_litert.interpreter", ".[tflite]")])
def test_missing_openvino_or_litert_is_a_one_line_error_naming_the_extra(trained, monkeypatch, capsys, runtime,
                                                                          module, extra):
    data, workspace = trained
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    errors = [line for line in _error_of(capsys, ["eval", "--model", "efficientnet-b0", data, "--workspace",
                                                  workspace, "--runtime", runtime]).splitlines()
              if line.startswith("error:")]
    assert len(errors) == 1 and "is not installed" in errors[0] and extra in errors[0], errors


def test_benchmark_times_every_runtime_and_precision_and_notes_what_cannot_run(tmp_path, capsys):
    """``--runtime tf onnxruntime openvino tflite --precision FP32 INT8``: a row for each combination that runs;
    one note for each that cannot (TensorFlow has no int8 rows; keras.applications' graph has extra ONNX inputs)
    while the run goes on."""
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    pytest.importorskip("ai_edge_litert", reason="the [tflite] extra is not installed")
    table = str(tmp_path / "table.md")
    common = ["-b", "2", "--image-size", "32", "--warmup-steps", "1", "--iters", "2", "--num-classes", "10",
              "--log-file", str(tmp_path / "bench.json"), "--table-file", table]
    assert cli.main(["benchmark", "--model", "efficientnet-b0", "--runtime", "tf", "onnxruntime", "openvino", "tflite",
                     "--precision", "FP32", "INT8", *common]) == 0
    text = open(table).read()
    rows = {tuple(c.strip() for c in line.split("|")[3:5]) for line in text.splitlines()
            if line.startswith("| efficientnet-b0")}
    assert rows == {("tf", "FP32"), ("onnxruntime", "FP32"), ("onnxruntime", "INT8"), ("openvino", "FP32"),
                    ("openvino", "INT8"), ("tflite", "FP32"), ("tflite", "INT8")}, text
    assert "- efficientnet-b0 under tf INT8: skipped" in text, text
    assert cli.main(["benchmark", "--model", "keras-efficientnetb0", "efficientnet-b0", "--runtime", "onnxruntime",
                     *common]) == 0
    text = open(table).read()
    assert "- keras-efficientnetb0 under onnxruntime: skipped (keras-efficientnetb0's ONNX graph needs inputs" in text
    assert "| efficientnet-b0 | inference | onnxruntime |" in text, text  # the next model still ran


def test_quantized_model_exports_to_tflite_int8_with_its_ranges(trained, quantized, capsys, caplog, tmp_path):
    """``export --format tflite`` of a QAT model: full int8 with its trained ranges (``qat_tflite``), the same ops as a
    post-training int8 file (no clip left, every convolution int8), and ``eval --tflite-file`` keeps the fake-quant
    model's top-1 to at most 2 of the 100 validation images lost (printed with ``--verify``'s max |delta p|; the
    direct conversion this replaces agreed with TensorFlow on 77.8 % of images, max |delta p| 0.98). ``--quantize fp16`` is refused in one line; ``eval --runtime
    tflite`` converts the QAT model on the fly, calibrated on the run's training images."""
    pytest.importorskip("ai_edge_litert", reason="the [tflite] extra is not installed")
    from efficientnet_tf2 import qat_tflite

    data, _ = trained
    export = ["export", "--model", "efficientnet-quant-b0", "--workspace", quantized, "--format", "tflite",
              "--calibration-images", "64", "--export-dir", str(tmp_path)]
    errors = [line for line in _error_of(capsys, export + ["--quantize", "fp16"]).splitlines()
              if line.startswith("error:")]
    assert len(errors) == 1 and "full int8 with its trained ranges" in errors[0], errors
    images = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(data, "val")) for f in fs)[:8]
    assert cli.main(export + ["--verify", *images]) == 0
    out = capsys.readouterr().out
    worst = float(re.search(r"probability difference = ([0-9.e+-]+)", out).group(1))
    assert "int8 with the QAT ranges" in out and "top-1 agreement" in out, out
    ops = qat_tflite.op_counts(open(tmp_path / "model.tflite", "rb").read())
    assert "MINIMUM" not in ops and "MAXIMUM" not in ops and ops.get("DEQUANTIZE", 0) <= 2, ops
    fake_quant = _eval(capsys, data, quantized, model="efficientnet-quant-b0")
    with caplog.at_level("INFO"):
        int8 = _eval(capsys, data, quantized, "--tflite-file", str(tmp_path / "model.tflite"),
                     model="efficientnet-quant-b0")
        on_the_fly = _eval(capsys, data, quantized, "--runtime", "tflite", model="efficientnet-quant-b0")
    assert "converted the loaded model to TFLite" in caplog.text
    with capsys.disabled():
        print(f"QAT -> TFLite int8: top-1 {int8['val.top1']} (on the fly {on_the_fly['val.top1']}) vs fake-quant "
              f"{fake_quant['val.top1']}; --verify max |delta p| {worst:.3f}")
    # this one-epoch 32 px QAT model sits at near-ties (val loss ~6.5): measured 69 / 73 vs fake-quant 62; on the
    # demo's B0, 98.8 vs FP32 98.6 on 1000 images (RESULTS.md). Asserted: int8 loses at most 2 of 100 to fake-quant.
    assert int8["val.top1"] >= fake_quant["val.top1"] - 2, (fake_quant, int8)
    assert on_the_fly["val.top1"] >= fake_quant["val.top1"] - 2, (fake_quant, on_the_fly)


@pytest.mark.parametrize("flags, words", [(["--tflite-file", "{bad}.tflite"], "LiteRT cannot load it"),
                                          (["--runtime", "openvino", "--onnx-file", "{bad}.onnx"],
                                           "OpenVINO cannot compile it: Unable to read the model")])
def test_a_corrupt_runtime_file_is_one_line_naming_it(tmp_path, capsys, flags, words):
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    pytest.importorskip("ai_edge_litert", reason="the [tflite] extra is not installed")
    from PIL import Image

    bad = str(tmp_path / "bad")
    for suffix in (".tflite", ".onnx"):
        open(bad + suffix, "wb").write(np.random.default_rng(0).bytes(4000))
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    argv = ["infer", "--model", "efficientnet-b0", "--random-weights", "--workspace", str(tmp_path / "ws"),
            *[f.format(bad=bad) for f in flags], str(tmp_path / "a.png")]
    errors = [line for line in _error_of(capsys, argv).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and bad in errors[0] and words in errors[0], errors
