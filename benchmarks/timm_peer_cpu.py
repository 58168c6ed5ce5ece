"""The PyTorch peer of the CPU serving table: timm's efficientnet_b0 at 224 px, img/s at batch 1 / 8 / 32.

Run with a separate venv's Python (PyTorch is not a dependency of the product or of CI):

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch timm
    /tmp/torchvenv/bin/python benchmarks/timm_peer_cpu.py --json /tmp/timm.json

Random weights (``pretrained=False``; speed does not depend on them), eval mode, ``torch.inference_mode``,
channels-last, one model per mode: eager, and ``torch.compile`` (inductor, the default mode) compiled once per
batch size before timing. Each (mode, batch): ``--warmup`` untimed calls, then ``--iters`` timed one by one; img/s
from the mean latency. Threads: ``torch.get_num_threads()`` (all cores), as the product's runtimes use.
"""
from __future__ import annotations

import argparse
import json
import time


def measure(model, batch: int, warmup: int, iters: int) -> float:
    import torch

    images = torch.rand(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(warmup):
            model(images)
        start = time.perf_counter()
        for _ in range(iters):
            model(images)
    return batch * iters / (time.perf_counter() - start)


def main() -> int:
    import timm
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    base = timm.create_model("efficientnet_b0", pretrained=False).eval().to(memory_format=torch.channels_last)
    rows = []
    for mode in ("eager", "torch.compile"):
        model = torch.compile(base) if mode == "torch.compile" else base
        for batch in args.batches:
            rate = measure(model, batch, args.warmup, args.iters)
            rows.append({"model": "timm efficientnet_b0", "mode": mode, "batch": batch, "img_s": round(rate, 1)})
            print(json.dumps(rows[-1]), flush=True)
    report = {"torch": torch.__version__, "timm": timm.__version__, "threads": torch.get_num_threads(), "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
