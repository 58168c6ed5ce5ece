"""int8 vs float speed on a shared, noisy CPU: paired, interleaved rounds instead of one long run per path.

This machine's speed swings by up to 2x within minutes (other tenants), so two paths timed one after the other can
differ by the swing rather than by their speed. Here every round times each path for ``--calls`` calls, back to back
and in alternating order, and keeps the ratio of the round's medians; the report is the median ratio over
``--rounds`` rounds with its quartiles (a slow minute slows both paths of its round alike).

Paths (B0 at 224 px, random weights, one file each, exported once): TFLite FP32 and INT8 (``export --format tflite``
of this checkout: XNNPACK, one thread per core), the QAT model ``efficientnet-quant-b0`` as TFLite int8 with its
trained ranges (``efficientnet_tf2.qat_tflite``), onnxruntime FP32 and OpenVINO FP32 (f32 arithmetic) on the ONNX
export. Each int8 ratio is taken against the fastest float path of each round.

    python benchmarks/paired_int8_ratio.py --json benchmarks/paired_int8_ratio_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _paths(batch: int) -> dict:
    """Name -> zero-argument callable running one batch."""
    from efficientnet_tf2 import benchmark

    return {"tflite INT8": benchmark.make_tflite_infer_step("efficientnet-b0", batch, 224, int8=True),
            "tflite INT8 (QAT)": benchmark.make_tflite_infer_step("efficientnet-quant-b0", batch, 224),
            "tflite FP32": benchmark.make_tflite_infer_step("efficientnet-b0", batch, 224),
            "onnxruntime FP32": benchmark.make_onnxruntime_infer_step("efficientnet-b0", batch, 224),
            "openvino FP32": benchmark.make_openvino_infer_step("efficientnet-b0", batch, 224)}


def _median_seconds(step, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(batch: int, rounds: int, calls: int) -> dict:
    """Per path: median img/s over rounds; ``int8 / best float``: median and quartiles of the per-round ratio."""
    paths = _paths(batch)
    for step in paths.values():  # warm-up
        for _ in range(5):
            step()
    rates = {name: [] for name in paths}
    ratios, qat_ratios = [], []
    names = list(paths)
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        seconds = {name: _median_seconds(paths[name], calls) for name in order}
        for name in names:
            rates[name].append(batch / seconds[name])
        best_float = min(v for k, v in seconds.items() if "INT8" not in k)
        ratios.append(best_float / seconds["tflite INT8"])
        qat_ratios.append(best_float / seconds["tflite INT8 (QAT)"])
    return {"batch": batch, "rounds": rounds, "calls": calls,
            "img_per_s_median": {name: round(float(np.median(v)), 1) for name, v in rates.items()},
            "int8_over_best_float": _spread(ratios), "qat_int8_over_best_float": _spread(qat_ratios)}


def _spread(ratios) -> dict:
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return {"median": round(float(median), 2), "q1": round(float(q1), 2), "q3": round(float(q3), 2),
            "min": round(float(min(ratios)), 2), "max": round(float(max(ratios)), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-b", "--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    report = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "results": []}
    for batch in args.batch_sizes:
        calls = max(3, args.calls // batch * 2) if batch > 1 else args.calls
        result = measure(batch, args.rounds, calls)
        report["results"].append(result)
        print(json.dumps(result), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
