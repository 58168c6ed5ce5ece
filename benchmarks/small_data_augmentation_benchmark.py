"""Small data: NVIDIA's flip against large-scale jitter (``--augmentation lsj``) for Mask R-CNN, same steps.

80 training images of the built-in shapes (128 px), 50 validation images, the demo's narrow network from random
weights (``scripts/demo.py``'s recipe, 10 epochs of 40 steps at batch 2: each image seen 10 times), evaluated
once at the end. Every run is a real ``main.py train``; the figure is the final COCO bbox / segm AP50 and AP.
Seeds change the weights' initialisation and the augmentation draws; the data set is the same.

    python benchmarks/small_data_augmentation_benchmark.py --seeds 0 1 2 --out /tmp/small_aug \
        --json benchmarks/small_data_augmentation_cpu.json
    python benchmarks/small_data_augmentation_benchmark.py --epochs 50 --seeds 0 1 \
        --json benchmarks/small_data_augmentation_2000_cpu.json   # 2000 steps (~17 min a run here)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scripts.convergence_check import final_metrics, make_data, train_argv  # noqa: E402
from scripts.demo import MRCNN_RECIPE  # noqa: E402

RECIPE = dataclasses.replace(MRCNN_RECIPE, num_train=80, num_val=50, epochs=10, steps_per_epoch=40, batch_size=2)
AUGMENTATIONS = ("flip", "lsj")
KEYS = ("val.bbox/AP50", "val.bbox/AP", "val.segm/AP50", "val.segm/AP")


def run(augmentation: str, seed: int, data: str, out: str, epochs: int = RECIPE.epochs) -> dict:
    """One training run of ``epochs`` x 40 steps; returns its final metrics and wall time."""
    import subprocess

    recipe = dataclasses.replace(RECIPE, seed=seed, epochs=epochs)
    work = os.path.join(out, f"{augmentation}_seed{seed}_e{epochs}")
    start = time.time()
    argv = [sys.executable, os.path.join(ROOT, "main.py"), *train_argv(recipe, data, work), "--augmentation",
            augmentation, "--no-tensorboard"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{augmentation} seed {seed} failed:\n{done.stderr[-3000:]}")
    metrics = final_metrics(work)
    return {"augmentation": augmentation, "seed": seed, "steps": epochs * RECIPE.steps_per_epoch, "seconds": round(time.time() - start, 1),
            **{k: round(metrics[k], 4) for k in KEYS}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="/tmp/small_aug")
    parser.add_argument("--augmentations", nargs="+", default=list(AUGMENTATIONS),
                        choices=("flip", "none", "ssj", "lsj", "multiscale"))
    parser.add_argument("--epochs", type=int, default=RECIPE.epochs, help="of 40 steps each (default 10: 400 steps)")
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "small_data_augmentation_cpu.json"))
    args = parser.parse_args()
    data = make_data(RECIPE, os.path.join(args.out, "data"))
    rows = []
    for seed in args.seeds:
        for augmentation in args.augmentations:  # alternating: the machine's drift hits both
            rows.append(run(augmentation, seed, data, args.out, args.epochs))
            print(json.dumps(rows[-1]), flush=True)
    summary = {a: {k: [r[k] for r in rows if r["augmentation"] == a] for k in KEYS} for a in args.augmentations}
    with open(args.json, "w") as handle:
        json.dump({"recipe": dataclasses.asdict(dataclasses.replace(RECIPE, epochs=args.epochs)), "runs": rows, "summary": summary}, handle, indent=1)
    for a in args.augmentations:
        print(a, {k: f"{sum(v) / len(v):.3f} ({min(v):.3f}-{max(v):.3f})" for k, v in summary[a].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
