"""End-to-end QAT check on the generated shapes dataset, through ``main.py``.

1. writes the shapes ImageFolder (``dataset/make_synthetic_imagefolder.py``,
   600 train / 200 val images, 10 classes, 64 px);
2. trains FP32 ``efficientnet-b0`` (Adam 0.002, BN momentum 0.9, as
   ``tests/efficientnet_tf2/test_training.py``); ``--reuse-fp32`` keeps a
   previous run's ``<workdir>/fp32/model_best``;
3. measures the quantized FP32 weights after calibration alone (percentile
   calibration on ``--calibration-steps`` training batches, no fine-tuning);
4. fine-tunes ``efficientnet-quant-b0`` from the FP32 ``model_best`` with the
   seed-003 QAT recipe: SGD momentum 0.89, LR 0.0125 per 128 images, cosine,
   WD 4.5e-5 (no WD on BN), after calibration, with fixed activation ranges.
   Flags changed for the 600-image dataset (printed in ``setup``): ``--epochs``
   ``--qat-epochs`` (default 4, recipe 10), batch 32 (recipe 128, LR scaled
   linearly), ``--bn-momentum 0.9``, no AutoAugment and no label smoothing
   (as the FP32 run);
5. trains the control: the FP32 ``model_best`` fine-tuned with the same recipe,
   epochs and flags, unquantized, so that QAT is compared with an FP32 model
   of the same training budget as well as with the FP32 starting point;
6. evaluates FP32 and QAT (``main.py eval``), exports both as SavedModel and ONNX
   (``main.py export --format savedmodel|onnx``), checks the ONNX Q/DQ
   placement and onnxruntime against Keras on every val image, and times
   onnxruntime on CPU at batch 1.

Writes ``benchmarks/qat_cpu.json`` (or ``--out``) and prints it.

    python scripts/qat_check.py --fp32-epochs 12 --qat-epochs 4
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="data and workspaces (default: a temporary folder)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "qat_cpu.json"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=60)
    parser.add_argument("--val-per-class", type=int, default=20)
    parser.add_argument("--fp32-epochs", type=int, default=12)
    parser.add_argument("--qat-epochs", type=int, default=4, help="QAT fine-tuning epochs (recipe: 10)")
    parser.add_argument("-b", "--batch-size", type=int, default=32)
    parser.add_argument("--calibration-steps", type=int, default=8, help="training batches for max calibration")
    parser.add_argument("--reuse-fp32", action="store_true",
                        help="skip FP32 training when <workdir>/fp32/model_best exists (same flags assumed)")
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads for the latency")
    return parser.parse_args(argv)


def main_py(argv):
    """Runs ``main.py`` in-process; returns its stdout."""
    import main as cli

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(argv)
    if code:
        raise SystemExit(f"main.py {' '.join(argv)} failed with {code}")
    return buffer.getvalue()


def common_flags(args):
    return ["--image-size", str(args.image_size), "-b", str(args.batch_size), "--bn-momentum", "0.9",
            "--log-every", "1000"]


def train_fp32(args, data, workspace):
    main_py(["train", "--model", "efficientnet-b0", data, "--workspace", workspace, *common_flags(args),
             "--epochs", str(args.fp32_epochs), "--optimizer", "adam", "--lr", "0.002", "--lr-batch", "32",
             "--warmup", "1", "--mixup", "0", "--label-smoothing", "0", "--augmentation", "none"])


def train_qat(args, data, workspace, fp32_workspace):
    """QAT recipe (optimizer, LR per 128 images, schedule, WD) with the run's epochs and batch."""
    main_py(["train", "--model", "efficientnet-quant-b0", data, "--workspace", workspace, *common_flags(args),
             "--epochs", str(args.qat_epochs), "--augmentation", "none", "--label-smoothing", "0",
             "--pretrained-from-file", os.path.join(fp32_workspace, "model_best"),
             "--calibration-steps", str(args.calibration_steps)])


def qat_before_finetune(args, data, fp32_workspace):
    """Top-1 (%) on val of the FP32 weights quantized and calibrated as ``main.py train`` does, not fine-tuned."""
    import numpy as np

    from efficientnet_tf2 import data as data_lib
    from efficientnet_tf2 import qat
    from efficientnet_tf2.experiments import classifier_config
    from efficientnet_tf2.model import build_classifier
    from efficientnet_tf2.transfer import load_file

    config = classifier_config("efficientnet-quant-b0", num_classes=args.num_classes, bn_momentum=0.9)
    model = build_classifier(config, input_shape=(args.image_size, args.image_size, 3), name="efficientnet_quant_b0")
    load_file(model, os.path.join(fp32_workspace, "model_best"))
    model = qat.quantize_model(model)
    train = data_lib.build_dataset(data, "train", args.image_size, args.batch_size, training=True, augment="none",
                                   num_classes=args.num_classes, seed=0)
    qat.calibrate(model, train, args.calibration_steps)
    val = data_lib.build_dataset(data, "val", args.image_size, args.batch_size, training=False, augment="none",
                                 num_classes=args.num_classes)
    hits = [np.argmax(model(x, training=False), -1) == y.numpy() for x, y in val]
    return round(100.0 * float(np.mean(np.concatenate(hits))), 2)


def finetune_fp32(args, data, workspace, fp32_workspace):
    """Control: FP32 ``efficientnet-b0`` fine-tuned exactly as the QAT run (recipe, epochs, flags)."""
    from common.command import registry

    qat = registry.get_experiment("efficientnet-quant-b0")
    r = qat.task
    main_py(["train", "--model", "efficientnet-b0", data, "--workspace", workspace, *common_flags(args),
             "--epochs", str(args.qat_epochs), "--augmentation", "none", "--label-smoothing", "0",
             "--optimizer", r.optimizer, "--momentum", str(r.momentum), "--lr", str(r.lr), "--lr-batch",
             str(r.lr_batch), "--lr-schedule", r.lr_schedule, "--weight-decay", str(qat.trainer.weight_decay),
             "--warmup", str(r.warmup_epochs), "--mixup", str(r.mixup),
             "--pretrained-from-file", os.path.join(fp32_workspace, "model_best")])


def epoch_top1(workspace):
    """Validation top-1 after each epoch, from the workspace's DLLogger ``raport.json``."""
    out = []
    with open(os.path.join(workspace, "raport.json")) as f:
        for line in f:
            record = json.loads(line[line.index("{"):])
            if record.get("step") and "val.top1" in record.get("data", {}):
                out.append(round(record["data"]["val.top1"], 2))
    return out


def _top1(metrics):
    return metrics.get("val.top1", metrics.get("top1"))


def evaluate(model, data, workspace, args):
    out = main_py(["eval", "--model", model, data, "--workspace", workspace, "--checkpoint",
                   os.path.join(workspace, "model_best"), "-b", str(args.batch_size)])
    return json.loads(out[out.rindex("{"):])


def export(model, workspace, fmt, verify_images):
    main_py(["export", "--model", model, "--workspace", workspace, "--checkpoint",
             os.path.join(workspace, "model_best"), "--format", fmt, "--verify", *verify_images])
    return os.path.join(workspace, "saved_model" if fmt == "savedmodel" else "model.onnx")


def size_mb(path):
    if os.path.isfile(path):
        return os.path.getsize(path) / 2**20
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(path) for f in files) / 2**20


def val_crops(data, image_size):
    """uint8 [N, S, S, 3] centre crops and int labels of the val split."""
    import numpy as np

    from efficientnet_tf2 import data as data_lib
    from efficientnet_tf2.preprocessing import eval_resize_crop

    paths, labels, _ = data_lib.list_image_folder(data, "val")
    crops = np.stack([eval_resize_crop(data_lib.decode_image_file(p), image_size).numpy() for p in paths])
    return crops, np.asarray(labels), paths


def onnx_facts(model_name, workspace, onnx_path, crops, labels, args):
    """Parity with Keras, ONNX top-1, Q/DQ coverage and batch-1 latency of one export."""
    import numpy as np

    from efficientnet_tf2 import onnx_export
    from common.command import cli, commands

    model = commands.load_model(cli.parse(["export", "--model", model_name, "--workspace", workspace,
                                           "--checkpoint", os.path.join(workspace, "model_best")]))
    parity = onnx_export.compare_with_keras(model, onnx_path, crops)
    probs = onnx_export.run_onnx(onnx_path, crops)["probabilities"]
    coverage = onnx_export.qdq_coverage(onnx_path)
    ops = onnx_export.count_ops(onnx_path)
    return {"ort_top1": round(100.0 * float(np.mean(np.argmax(probs, -1) == labels)), 2),
            "ort_vs_keras_max_abs_prob_diff": parity["max_abs_diff"],
            "ort_vs_keras_top1_agreement": parity["top1_agreement"],
            "conv_gemm_nodes": len(coverage),
            "conv_gemm_with_dq_weight_and_input": sum(c["weight_dq"] and c["input_dq"] for c in coverage),
            "quantize_linear_nodes": ops.get("QuantizeLinear", 0),
            "dequantize_linear_nodes": ops.get("DequantizeLinear", 0),
            "ort_latency_ms_batch1": latency_ms(onnx_path, crops[:1], args)}


def latency_ms(onnx_path, image, args):
    """Median and p90 onnxruntime CPU latency (ms) of one image."""
    import numpy as np

    from common.io.onnx_runtime import make_session
    from efficientnet_tf2.onnx_export import INPUT_NAME

    session = make_session(onnx_path, threads=args.threads)
    for _ in range(5):
        session.run(None, {INPUT_NAME: image})
    times = []
    for _ in range(args.latency_runs):
        start = time.perf_counter()
        session.run(None, {INPUT_NAME: image})
        times.append(1000.0 * (time.perf_counter() - start))
    return {"median": round(float(np.median(times)), 3), "p90": round(float(np.percentile(times, 90)), 3),
            "threads": args.threads, "runs": args.latency_runs}


def cpu_name():
    """CPU model from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def run(args):
    from dataset.make_synthetic_imagefolder import make_imagefolder

    work = args.workdir or tempfile.mkdtemp(prefix="qat_check_")
    data, fp32_ws, qat_ws, control_ws = (os.path.join(work, d) for d in ("shapes", "fp32", "qat", "fp32_finetuned"))
    make_imagefolder(data, num_classes=args.num_classes, train_per_class=args.train_per_class,
                     val_per_class=args.val_per_class, image_size=args.image_size, seed=0)
    timings, start = {}, time.time()
    if not (args.reuse_fp32 and os.path.isdir(os.path.join(fp32_ws, "model_best"))):
        train_fp32(args, data, fp32_ws)
    timings["fp32_train_s"], start = round(time.time() - start, 1), time.time()
    train_qat(args, data, qat_ws, fp32_ws)
    timings["qat_train_s"], start = round(time.time() - start, 1), time.time()
    finetune_fp32(args, data, control_ws, fp32_ws)
    timings["fp32_finetune_s"] = round(time.time() - start, 1)
    crops, labels, paths = val_crops(data, args.image_size)
    result = {"setup": {**{k: v for k, v in vars(args).items() if k not in ("workdir", "out")},
                        "dataset": "dataset/make_synthetic_imagefolder.py shapes", "cpu": cpu_name(),
                        "cpu_count": os.cpu_count(), "fp32_recipe": "adam lr 0.002/32, warmup 1, bn-momentum 0.9",
                        "qat_recipe": "efficientnet-quant-b0 recipe: sgd m 0.89, lr 0.0125/128 cosine, wd 4.5e-5; "
                                      "percentile-99.99 calibration, fixed activation ranges",
                        "qat_flags_for_small_dataset": "--epochs qat_epochs (recipe 10), -b 32 (recipe 128, LR "
                                                       "scaled), --bn-momentum 0.9, --augmentation none, "
                                                       "--label-smoothing 0"},
              "timings": timings}
    for key, model, workspace in (("fp32", "efficientnet-b0", fp32_ws), ("qat", "efficientnet-quant-b0", qat_ws)):
        metrics = evaluate(model, data, workspace, args)
        saved_model = export(model, workspace, "savedmodel", paths[:4])
        onnx_path = export(model, workspace, "onnx", paths[:4])
        result[key] = {"model": model, "keras_top1": _top1(metrics),
                       "eval": metrics, "savedmodel_mb": round(size_mb(saved_model), 2),
                       "onnx_mb": round(size_mb(onnx_path), 2),
                       **onnx_facts(model, workspace, onnx_path, crops, labels, args)}
    result["qat"]["val_top1_per_epoch"] = epoch_top1(qat_ws)
    control = evaluate("efficientnet-b0", data, control_ws, args)
    result["fp32_finetuned"] = {"model": "efficientnet-b0", "note": "FP32 model_best fine-tuned with the QAT "
                                "recipe and epochs (same budget as QAT, no quantization)",
                                "keras_top1": _top1(control), "eval": control,
                                "val_top1_per_epoch": epoch_top1(control_ws)}
    result["qat_before_finetune_top1"] = qat_before_finetune(args, data, fp32_ws)
    result["qat_minus_fp32_top1"] = round(result["qat"]["keras_top1"] - result["fp32"]["keras_top1"], 2)
    result["qat_minus_fp32_finetuned_top1"] = round(result["qat"]["keras_top1"] - _top1(control), 2)
    return result


def main(argv=None):
    args = parse_args(argv)
    result = run(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
