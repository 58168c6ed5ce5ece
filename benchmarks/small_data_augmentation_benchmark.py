"""Small data: NVIDIA's flip against large-scale jitter (``--augmentation lsj``) for Mask R-CNN, same steps.

80 training images of the built-in shapes (128 px), 50 validation images, the demo's narrow network from random
weights (``scripts/demo.py``'s recipe at batch 2; ``--epochs`` of 40 steps, the LR dropping 10x at 80 % and 95 %
of them). Every run is a real ``main.py train``; the figures are the COCO bbox / segm AP50 and AP of the last
epoch (with ``--eval-every N`` also the bbox AP50 curve; the last epoch is reported, not the best-on-val one).
Seeds change the weights' initialisation and the augmentation draws; the data set is the same. LSJ regularises:
it loses on short runs (the model has not fit even the training images) and wins once flip has memorised them.

    python benchmarks/small_data_augmentation_benchmark.py --epochs 125 --eval-every 25 --seeds 0 1 --parallel \
        --json benchmarks/small_data_augmentation_5000_cpu.json   # 5000 steps: ~45 min a seed here
    python benchmarks/small_data_augmentation_benchmark.py --seeds 0 1 2   # 400 steps: LSJ loses at this length
    python benchmarks/small_data_augmentation_benchmark.py --seeds 0 --augmentations flip lsj ssj lsj@0.5-2.0

A run already in ``--json`` (same recipe) is kept, not run again: add a seed by naming it.
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
from mrcnn_tf2.config import AUGMENTATIONS as AUGMENTATION_PRESETS  # noqa: E402
from scripts.demo import MRCNN_RECIPE  # noqa: E402

RECIPE = dataclasses.replace(MRCNN_RECIPE, num_train=80, num_val=50, epochs=10, steps_per_epoch=40, batch_size=2)
AUGMENTATIONS = ("flip", "lsj")
PRESETS = tuple(AUGMENTATION_PRESETS)
KEYS = ("val.bbox/AP50", "val.bbox/AP", "val.segm/AP50", "val.segm/AP")


def augmentation_flags(variant: str) -> list:
    """``lsj`` -> ``--augmentation lsj``; ``lsj@0.5-2.0`` -> the same preset with ``--scale-range 0.5 2.0``."""
    name, _, scales = variant.partition("@")
    flags = ["--augmentation", name]
    if scales:
        flags += ["--scale-range", *(str(float(v)) for v in scales.split("-"))]
    return flags


def variant(text: str) -> str:
    """``--augmentations`` item, checked: ``PRESET`` or ``PRESET@MIN-MAX``."""
    name, _, scales = text.partition("@")
    try:
        low, high = (float(v) for v in scales.split("-")) if scales else (1.0, 1.0)
    except ValueError:
        low = high = -1.0
    if name not in PRESETS or not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PRESET or PRESET@MIN-MAX, PRESET one of {PRESETS}")
    return text


def validations(work: str) -> dict:
    """``{epoch: val.* metrics}`` of every validation the run logged (``raport.json``)."""
    from common.io.report import read_records

    return {r["step"][0]: r["data"] for r in read_records(os.path.join(work, "raport.json"))
            if len(r.get("step") or []) == 1 and "val.bbox/AP50" in r.get("data", {})}


def run(augmentation: str, seed: int, data: str, out: str, epochs: int = RECIPE.epochs, eval_every: int = 0) -> dict:
    """One training run of ``epochs`` x 40 steps; returns the last epoch's metrics (not the best-on-val checkpoint's),
    the bbox AP50 of every validation (``eval_every`` epochs) and the wall time."""
    import subprocess

    recipe = dataclasses.replace(RECIPE, seed=seed, epochs=epochs)
    work = os.path.join(out, f"{augmentation}_seed{seed}_e{epochs}")
    start = time.time()
    argv = [sys.executable, os.path.join(ROOT, "main.py"), *train_argv(recipe, data, work),
            *augmentation_flags(augmentation), "--no-tensorboard"]
    if eval_every:
        argv += ["--eval-every", str(eval_every)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{augmentation} seed {seed} failed:\n{done.stderr[-3000:]}")
    curve = validations(work)
    metrics = curve[max(curve)] if curve else final_metrics(work)
    return {"augmentation": augmentation, "seed": seed, "steps": epochs * RECIPE.steps_per_epoch,
            "seconds": round(time.time() - start, 1), **{k: round(metrics[k], 4) for k in KEYS},
            "bbox_AP50_by_epoch": {e: round(m["val.bbox/AP50"], 4) for e, m in sorted(curve.items())}}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="/tmp/small_aug")
    parser.add_argument("--augmentations", nargs="+", default=list(AUGMENTATIONS), type=variant,
                        metavar="PRESET[@MIN-MAX]",
                        help=f"--augmentation presets {PRESETS}, each optionally with its own scale range")
    parser.add_argument("--epochs", type=int, default=RECIPE.epochs, help="of 40 steps each (default 10: 400 steps)")
    parser.add_argument("--eval-every", type=int, default=0, help="also validate every N epochs (the curve)")
    parser.add_argument("--parallel", action="store_true",
                        help="a seed's runs side by side (one process each; the figures do not depend on speed)")
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "small_data_augmentation_cpu.json"))
    return parser.parse_args()


def finished_runs(path: str, recipe: dict) -> list:
    """The runs already in ``path`` for the same recipe (a benchmark stopped or extended by a seed goes on)."""
    try:
        with open(path) as handle:
            old = json.load(handle)
    except (OSError, ValueError):
        return []
    return old["runs"] if old.get("recipe") == recipe else []


def summarize(rows: list, augmentations: list) -> dict:
    """``{augmentation: {metric: [one value per seed]}}``."""
    return {a: {k: [r[k] for r in rows if r["augmentation"] == a] for k in KEYS} for a in augmentations}


def print_summary(summary: dict) -> None:
    """Mean (min-max) of each metric, and each augmentation's change of the mean against the first one's."""
    base = summary[next(iter(summary))]
    for a, metrics in summary.items():
        print(a, {k: f"{mean(v):.3f} ({min(v):.3f}-{max(v):.3f}), {mean(v) / mean(base[k]) - 1:+.0%}"
                  for k, v in metrics.items() if v})


def mean(values: list) -> float:
    return sum(values) / len(values)


def main() -> int:
    from concurrent.futures import ThreadPoolExecutor

    args = parse_args()
    recipe = json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(RECIPE, epochs=args.epochs))))
    data = make_data(RECIPE, os.path.join(args.out, "data"))
    rows = finished_runs(args.json, recipe)
    done = {(r["augmentation"], r["seed"]) for r in rows}
    with ThreadPoolExecutor(len(args.augmentations) if args.parallel else 1) as pool:
        for seed in args.seeds:  # a seed's runs one after the other (the machine's drift hits both) or side by side
            todo = [a for a in args.augmentations if (a, seed) not in done]
            for row in pool.map(lambda a: run(a, seed, data, args.out, args.epochs, args.eval_every), todo):
                rows.append(row)
                print(json.dumps(row), flush=True)
            with open(args.json, "w") as handle:  # after every seed: a stopped benchmark keeps what it measured
                json.dump({"recipe": recipe, "runs": rows, "summary": summarize(rows, args.augmentations)}, handle,
                          indent=1)
    print_summary(summarize(rows, args.augmentations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
