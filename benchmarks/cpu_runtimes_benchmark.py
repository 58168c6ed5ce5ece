"""CPU serving, every runtime and precision in one run: EfficientNet-B0 speed at 224 px and int8 accuracy.

Part 1, speed: one ``main.py benchmark`` over ``efficientnet-b0`` and ``keras-efficientnetb0`` under
``--runtime tf onnxruntime openvino tflite --precision FP32 INT8`` at batch 1 / 8 / 32 (random weights; the
INT8 files are calibrated on synthetic crops, which does not change their speed). A combination that cannot
run is a note under the table.

Part 1b: OpenVINO with ``--openvino-precision bf16`` (the plugin's bf16 arithmetic on AVX512-BF16/AMX CPUs), and
TFLite's other ``export --quantize`` kinds (``fp16``, ``dynamic``) timed the same way (``tflite_kinds``: LiteRT +
XNNPACK, one thread per core, median of the timed calls).

Part 2, accuracy: the demo's B0 (10 generated classes, 64 px, ``scripts/demo.py``'s recipe) trained once,
exported as int8 with ``--calibration-images 200`` (TFLite full int8; onnxruntime's static Q/DQ ONNX, run by
onnxruntime and by OpenVINO), and every file evaluated on the same 200 validation images with ``main.py eval``
against the FP32 Keras model; the max |delta p| of each int8 file comes from ``export --verify`` on 32 of them.
Part 2c evaluates FP32, post-training and QAT int8 again on 1000 further validation images of the same generator.

    python benchmarks/cpu_runtimes_benchmark.py --out /tmp/cpu_runtimes --json benchmarks/cpu_runtimes_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIMES = ("tf", "onnxruntime", "openvino", "tflite")


def main_py(*argv: str) -> str:
    """``python main.py ARGV`` in a fresh process; returns its stdout (raises with the stderr tail on failure)."""
    done = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *argv], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if done.returncode:
        raise RuntimeError(f"main.py {' '.join(argv[:3])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def speed(out: str, batches, iters: int) -> str:
    """Part 1: the markdown table (and notes) of one benchmark run."""
    table = os.path.join(out, "speed.md")
    main_py("benchmark", "--model", "efficientnet-b0", "keras-efficientnetb0", "--runtime", *RUNTIMES,
            "--precision", "FP32", "INT8", "-b", *map(str, batches), "--image-size", "224", "--warmup-steps", "5",
            "--iters", str(iters), "--log-file", os.path.join(out, "speed.json"), "--table-file", table)
    return open(table).read()


def openvino_bf16(out: str, batches, iters: int) -> str:
    """Part 1b: the OpenVINO rows again with bf16 arithmetic."""
    table = os.path.join(out, "speed_bf16.md")
    main_py("benchmark", "--model", "efficientnet-b0", "--runtime", "openvino", "--openvino-precision", "bf16",
            "--precision", "FP32", "-b", *map(str, batches), "--image-size", "224", "--warmup-steps", "5",
            "--iters", str(iters), "--log-file", os.path.join(out, "speed_bf16.json"), "--table-file", table)
    return open(table).read()


def tflite_kinds(batches, iters: int) -> dict:
    """Part 1b: img/s of B0 (random weights, 224 px) exported with each ``--quantize`` kind, under LiteRT."""
    import numpy as np

    sys.path.insert(0, ROOT)
    from common.io import tflite_runtime
    from efficientnet_tf2 import tflite_export
    from efficientnet_tf2.benchmark import CALIBRATION_CROPS, _images, _task_and_model

    _, model = _task_and_model("efficientnet-b0", 224, 1000)
    crops = np.random.default_rng(1).integers(0, 256, (CALIBRATION_CROPS, 224, 224, 3), np.uint8)
    rates = {}
    for kind in tflite_export.QUANTIZATIONS:
        path = tflite_export.export_to_temporary_file(model, 224, kind, crops if kind == "int8" else None)
        runner = tflite_runtime.make_interpreter(path).get_signature_runner(tflite_export.SIGNATURE)
        for batch in batches:
            feed = {"images": _images(batch, 224)}
            for _ in range(5):
                runner(**feed)
            times = []
            for _ in range(iters):
                start = time.perf_counter()
                runner(**feed)
                times.append(time.perf_counter() - start)
            rates[f"{kind} b{batch}"] = round(batch / float(np.median(times)), 1)
        rates[f"{kind} MB"] = round(os.path.getsize(path) / 2 ** 20, 1)
        print(kind, {k: v for k, v in rates.items() if k.startswith(kind)}, flush=True)
    return rates


def train_demo_model(out: str) -> tuple:
    """``(data, workspace)`` of the demo's B0 recipe (trained once, reused when present)."""
    data, work = os.path.join(out, "shapes"), os.path.join(out, "b0")
    if not os.path.isdir(os.path.join(work, "model_best")):
        subprocess.run([sys.executable, "-m", "dataset.make_synthetic_imagefolder", "--out", data, "--num-classes",
                        "10", "--train-per-class", "80", "--val-per-class", "20", "--image-size", "64"], cwd=ROOT,
                       check=True, capture_output=True)
        main_py("train", "--model", "efficientnet-b0", data, "--workspace", work, "--image-size", "64", "--epochs",
                "16", "-b", "32", "--optimizer", "adam", "--lr", "0.002", "--lr-batch", "32", "--warmup", "1",
                "--mixup", "0", "--augmentation", "none", "--bn-momentum", "0.9", "--log-every", "100",
                "--no-tensorboard")
    return data, work


def top1(stdout: str) -> float:
    return json.loads(stdout[stdout.index("{"):stdout.rindex("}") + 1])["val.top1"]


def accuracy(out: str) -> dict:
    """Part 2: top-1 of FP32 and of each int8 path on the demo's validation images, and export --verify's numbers."""
    data, work = train_demo_model(out)
    val = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(data, "val")) for f in fs)[::6][:32]
    evaluate = ("eval", "--model", "efficientnet-b0", data, "--workspace", work, "-b", "50")
    results = {"tf FP32": top1(main_py(*evaluate))}
    for fmt in ("tflite", "onnx"):
        folder = os.path.join(out, f"int8_{fmt}")
        printed = main_py("export", "--model", "efficientnet-b0", "--workspace", work, "--format", fmt,
                          "--quantize", "int8", "--calibration-images", "200", "--export-dir", folder, "--overwrite",
                          "--verify", *val)
        diff = re.search(r"probability difference = ([0-9.e+-]+), top-1 agreement ([0-9.]+)%", printed)
        results[f"{fmt} int8 verify"] = {"max_abs_dp": float(diff.group(1)), "top1_agreement": float(diff.group(2))}
    results["tflite INT8"] = top1(main_py(*evaluate, "--tflite-file", os.path.join(out, "int8_tflite", "model.tflite")))
    onnx_int8 = os.path.join(out, "int8_onnx", "model.onnx")
    results["onnxruntime INT8"] = top1(main_py(*evaluate, "--onnx-file", onnx_int8))
    results["openvino INT8"] = top1(main_py(*evaluate, "--runtime", "openvino", "--onnx-file", onnx_int8))
    results["tflite FP32"] = top1(main_py(*evaluate, "--runtime", "tflite"))
    results["openvino FP32"] = top1(main_py(*evaluate, "--runtime", "openvino"))
    results.update(qat_accuracy(out, data, work))
    results.update(larger_val(out, work))
    return results


def larger_val(out: str, fp32: str) -> dict:
    """Part 2c: the same files on 1000 more validation images of the same generator (seed 1, 100 per class), where
    one image is 0.1 point instead of 0.5."""
    data = os.path.join(out, "val1000")
    if not os.path.isdir(os.path.join(data, "val")):
        subprocess.run([sys.executable, "-m", "dataset.make_synthetic_imagefolder", "--out", data, "--num-classes",
                        "10", "--train-per-class", "1", "--val-per-class", "100", "--image-size", "64", "--seed", "1"],
                       cwd=ROOT, check=True, capture_output=True)
    fp32_eval = ("eval", "--model", "efficientnet-b0", data, "--workspace", fp32, "-b", "50")
    qat_eval = ("eval", "--model", "efficientnet-quant-b0", data, "--workspace", os.path.join(out, "qat"), "-b", "50")
    return {"val1000 tf FP32": top1(main_py(*fp32_eval)),
            "val1000 tflite INT8": top1(main_py(*fp32_eval, "--tflite-file",
                                                os.path.join(out, "int8_tflite", "model.tflite"))),
            "val1000 QAT tf fake-quant": top1(main_py(*qat_eval)),
            "val1000 QAT tflite INT8": top1(main_py(*qat_eval, "--tflite-file",
                                                    os.path.join(out, "qat_tflite", "model.tflite")))}


def qat_accuracy(out: str, data: str, fp32: str) -> dict:
    """Part 2b: ``efficientnet-quant-b0`` fine-tuned 2 epochs from the demo's B0 (the LR of the test suite's QAT
    fixture: the recipe's ImageNet LR wrecks an 800-image set), evaluated as TensorFlow fake-quant, as its Q/DQ
    graph on onnxruntime and as TFLite int8 with its trained ranges (``export --format tflite``)."""
    work = os.path.join(out, "qat")
    if not os.path.isdir(os.path.join(work, "model_best")):
        main_py("train", "--model", "efficientnet-quant-b0", data, "--workspace", work, "--image-size", "64",
                "--epochs", "2", "-b", "32", "--lr", "0.001", "--mixup", "0", "--label-smoothing", "0",
                "--augmentation", "none", "--log-every", "100", "--no-tensorboard",
                "--pretrained-from-file", os.path.join(fp32, "model_best"))
    evaluate = ("eval", "--model", "efficientnet-quant-b0", data, "--workspace", work, "-b", "50")
    folder = os.path.join(out, "qat_tflite")
    main_py("export", "--model", "efficientnet-quant-b0", "--workspace", work, "--format", "tflite",
            "--calibration-images", "200", "--export-dir", folder, "--overwrite")
    return {"QAT tf fake-quant": top1(main_py(*evaluate)),
            "QAT onnxruntime Q/DQ": top1(main_py(*evaluate, "--runtime", "onnxruntime")),
            "QAT tflite INT8": top1(main_py(*evaluate, "--tflite-file", os.path.join(folder, "model.tflite")))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/cpu_runtimes")
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "cpu_runtimes_cpu.json"))
    parser.add_argument("-b", "--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--skip", nargs="*", default=[], choices=["speed", "accuracy"])
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    report = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if "speed" not in args.skip:
        report["speed_table"] = speed(args.out, args.batch_sizes, args.iters)
        print(report["speed_table"], flush=True)
        report["openvino_bf16_table"] = openvino_bf16(args.out, args.batch_sizes, args.iters)
        print(report["openvino_bf16_table"], flush=True)
        report["tflite_kinds"] = tflite_kinds(args.batch_sizes, args.iters)
    if "accuracy" not in args.skip:
        report["accuracy"] = accuracy(args.out)
        print(json.dumps(report["accuracy"], indent=1), flush=True)
    with open(args.json, "w") as handle:
        json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
