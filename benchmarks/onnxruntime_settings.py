"""onnxruntime session settings on this machine: graph optimisation level x intra-op threads.

EfficientNet-B0 (random weights, ``main.py export --format onnx``'s graph) at 224 px, one batch size,
img/s of each setting in one process (same exported file), median of ``--iters`` timed runs::

    python benchmarks/onnxruntime_settings.py --batch 8 --out benchmarks/onnxruntime_settings_cpu.json
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.command.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet-b0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1, cores, 2 x cores")
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    from common.io.onnx_runtime import OPTIMIZATION_LEVELS, cpu_count
    from efficientnet_tf2.benchmark import make_onnxruntime_infer_step

    cores = cpu_count()
    rows = []
    for threads in args.threads or sorted({1, cores, 2 * cores}):
        for level in OPTIMIZATION_LEVELS:
            step = make_onnxruntime_infer_step(args.model, args.batch, args.image_size, threads=threads,
                                               optimization=level)
            for _ in range(3):
                step()
            times = []
            for _ in range(args.iters):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            row = {"model": args.model, "batch": args.batch, "threads": threads, "optimization": level,
                   "img_per_s": round(args.batch / statistics.median(times), 2), "cores": cores}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
