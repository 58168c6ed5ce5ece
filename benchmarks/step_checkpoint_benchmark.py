"""What mid-epoch ``checkpoint-latest`` saves cost the demo's training runs (issue 34: < 3 % at the default interval).

    python benchmarks/step_checkpoint_benchmark.py --out benchmarks/step_checkpoint_cpu.json

The demo's own training commands (``scripts/demo.py``: EfficientNet-B0 at 64 px, Adam, batch 32; Mask R-CNN's
demo recipe at 128 px) on the demo's generated data, shortened (``--effnet-epochs``, ``--mrcnn-epochs``), each
run as a fresh ``main.py train`` process in a fresh workspace, in the order

    off (--save-every-minutes 0), default (30 min), every N steps (--save-every-steps N), off again

so drift of the shared machine shows as the difference of the two "off" runs. The cost of one save is
``(every-N - off) / saves``; the default interval's cost is that over 30 minutes of training. A demo run is
shorter than 30 minutes, so at the default it saves nothing mid-epoch: what it pays is the per-step check.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from scripts.convergence_check import train_argv  # noqa: E402
from scripts.demo import MRCNN_RECIPE  # noqa: E402
import dataclasses  # noqa: E402

DEFAULT_MINUTES = 30.0


def effnet_argv(data: str, work: str, epochs: int):
    """The demo's EfficientNet-B0 training command (``scripts/demo.py``), ``epochs`` epochs."""
    return ["train", "--model", "efficientnet-b0", data, "--workspace", work, "--image-size", "64", "--epochs",
            str(epochs), "-b", "32", "--optimizer", "adam", "--lr", "0.002", "--lr-batch", "32", "--warmup", "1",
            "--mixup", "0", "--augmentation", "none", "--bn-momentum", "0.9", "--log-every", "10", "--no-eval"]


def timed(argv) -> float:
    start = time.time()
    subprocess.run([sys.executable, "main.py", *argv], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return time.time() - start


def arms(make_argv, every: int, steps: int) -> dict:
    """Wall seconds of the four runs, and the derived cost per save and at the default interval."""
    settings = [("off", ["--save-every-minutes", "0"]), ("default (30 min)", []),
                (f"every {every} steps", ["--save-every-steps", str(every), "--save-every-minutes", "0"]),
                ("off again", ["--save-every-minutes", "0"])]
    seconds = {}
    for name, flags in settings:
        with tempfile.TemporaryDirectory() as work:
            seconds[name] = round(timed(make_argv(work) + flags), 2)
        print(f"  {name}: {seconds[name]} s", flush=True)
    off = (seconds["off"] + seconds["off again"]) / 2
    saves = steps // every
    per_save = (seconds[f"every {every} steps"] - off) / saves
    return {"seconds": seconds, "steps": steps, "step_saves": saves, "seconds_per_save": round(per_save, 3),
            "default_vs_off": round(seconds["default (30 min)"] / off, 4),
            "cost_at_default_interval": round(max(per_save, 0) / (60 * DEFAULT_MINUTES), 5)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--effnet-epochs", type=int, default=4)
    parser.add_argument("--mrcnn-epochs", type=int, default=2)
    parser.add_argument("--every", type=int, default=10, help="the aggressive interval, in steps")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    data = tempfile.mkdtemp(prefix="ckpt_bench_")
    py = sys.executable
    subprocess.run([py, "-m", "dataset.make_synthetic_imagefolder", "--out", f"{data}/effnet", "--num-classes",
                    "10", "--train-per-class", "80", "--val-per-class", "20", "--image-size", "64"], cwd=ROOT,
                   check=True, capture_output=True)
    recipe = dataclasses.replace(MRCNN_RECIPE, epochs=args.mrcnn_epochs)
    subprocess.run([py, "-m", "dataset.make_synthetic_shapes", "--out", f"{data}/shapes", "--num-train",
                    str(recipe.num_train), "--num-val", str(recipe.num_val), "--image-size", str(recipe.image_size),
                    "--seed", str(recipe.data_seed)], cwd=ROOT, check=True, capture_output=True)
    report = {}
    print("efficientnet-b0 (demo command)", flush=True)
    report["efficientnet-b0"] = arms(lambda work: effnet_argv(f"{data}/effnet", work, args.effnet_epochs),
                                     args.every, args.effnet_epochs * 25)
    print("mask-rcnn (demo recipe)", flush=True)
    report["mask-rcnn"] = arms(lambda work: train_argv(recipe, f"{data}/shapes", work) + ["--no_eval"],
                               args.every, recipe.epochs * recipe.steps_per_epoch)
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
