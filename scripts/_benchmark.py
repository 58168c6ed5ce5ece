"""Shared CLI of ``benchmark_training.py`` and ``benchmark_inference.py``.

For each (model, batch size): build the model and its real step, run
``--warmup`` untimed steps, time ``--iters`` steps one by one, and report
img/s plus p50/p90/p95/p99 latency as DLLogger lines and a markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COLUMNS = ("model", "mode", "precision", "xla", "batch", "image_size", "throughput",
           "latency_mean", "latency_p50", "latency_p90", "latency_p95", "latency_p99")


def _families():
    from efficientnet_tf2 import benchmark as effnet

    families = [effnet]
    try:
        from mrcnn_tf2 import benchmark as mrcnn
        families.append(mrcnn)
    except ImportError:
        pass
    return families


def _family(name):
    for family in _families():
        if name in family.list_models():
            return family
    known = sorted(n for f in _families() for n in f.list_models())
    raise SystemExit(f"error: unknown model {name!r}; available: {', '.join(known)}")


def _parse_size(text):
    """``"224"`` -> 224; ``"832x1344"`` stays a string for families with rectangular inputs."""
    return int(text) if str(text).isdigit() else str(text)


def parse_args(argv, mode):
    parser = argparse.ArgumentParser(description=f"{mode} throughput and latency benchmark",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", "--arch", nargs="+", default=["efficientnet-b0"],
                        help="one or more model names (keras-efficientnetb0 = Keras reference)")
    parser.add_argument("-b", "--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--precision", default="FP32", choices=["FP32", "TF32", "AMP", "BF16"])
    parser.add_argument("--xla", action="store_true", help="XLA-compile the step")
    parser.add_argument("--image-size", default=None,
                        help="default: the model's resolution (EfficientNet: S; Mask R-CNN: S or HxW, 832x1344)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (tracing/compilation)")
    parser.add_argument("--iters", "--prof", type=int, default=20, help="timed steps per batch size")
    parser.add_argument("--num-classes", type=int, default=None, help="default: 1000 (EfficientNet), 91 (Mask R-CNN)")
    parser.add_argument("--raport-file", "--log-file", dest="log_file", default="benchmark.json",
                        help="DLLogger JSON output")
    parser.add_argument("--table-file", default=None, help="also write the markdown table here")
    return parser.parse_args(argv)


def run(argv, mode: str) -> int:
    """Runs the benchmark grid; ``mode`` is ``training`` or ``inference``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parse_args(argv, mode)
    import tensorflow as tf

    from common import precision
    from common.benchmark import format_table, summarize, time_steps
    from common.logger import setup_logger

    policy = precision.resolve_precision(precision=args.precision)
    precision.configure_precision(policy)
    logger = setup_logger(log_file=args.log_file)
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    logger.log("PARAMETER", {"mode": mode, "device": device, "tensorflow": tf.__version__,
                             "machine": platform.machine(), "warmup": args.warmup, "iters": args.iters})
    rows = []
    for name in args.model:
        family = _family(name)
        size = _parse_size(args.image_size) if args.image_size else family.default_image_size(name)
        make = family.make_train_step if mode == "training" else family.make_infer_step
        for batch in args.batch_sizes:
            print(f"[{mode}] {name} batch {batch} @ {size}px: {args.warmup} warm-up + {args.iters} timed steps",
                  flush=True)
            step = make(name, batch, size, policy=policy, xla=args.xla, num_classes=args.num_classes)
            row = dict(model=name, mode=mode, precision=args.precision, xla=args.xla, batch=batch,
                       image_size=size, **summarize(time_steps(step, args.warmup, args.iters), batch))
            logger.log((name, batch), {k: v for k, v in row.items() if isinstance(v, (int, float))})
            rows.append(row)
    logger.flush()
    table = format_table(rows, COLUMNS)
    print(f"\n{device}, TensorFlow {tf.__version__}; throughput img/s, latency ms\n{table}")
    if args.table_file:
        with open(args.table_file, "w") as f:
            f.write(table + "\n")
    print(f"DLLogger results: {os.path.abspath(args.log_file)}")
    return 0
