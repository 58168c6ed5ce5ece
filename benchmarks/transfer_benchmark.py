"""Fine-tuning vs training from scratch on the built-in data (the fine-tuning recipe of docs/fine-tuning.md).

1. ``source``: EfficientNet-B0 trained on 10 generated classes (shape x colour 0-9).
2. ``target``: 5 *other* generated classes (10-14) with few images. For each seed, the same number of steps:
   ``scratch`` (random init), ``fine-tune`` (``--pretrained-from-file source/model_best``: the 10-class head is
   replaced by a fresh 5-class one) and ``fine-tune --freeze-epochs 1`` (head first, then everything).

Every run is a real ``main.py train`` command; val top-1 of the target's last epoch is recorded.

    python benchmarks/transfer_benchmark.py --out /tmp/transfer --seeds 0 1 2 --json benchmarks/transfer_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dataset.make_synthetic_imagefolder import class_names, make_imagefolder  # noqa: E402

#: the recipe (documented in docs/fine-tuning.md): Adam, LR 2e-3 per 32 images, 1 warm-up epoch, no mixup.
RECIPE = ["--image-size", "64", "-b", "32", "--optimizer", "adam", "--lr", "0.002", "--lr-batch", "32",
          "--warmup", "1", "--mixup", "0", "--augmentation", "none", "--bn-momentum", "0.9", "--log-every", "50",
          "--save-every-minutes", "0"]
SOURCE_DATA = {"num_classes": 10, "train_per_class": 60, "val_per_class": 10, "image_size": 64, "seed": 100}
SOURCE_EPOCHS, TARGET_EPOCHS = 6, 3
SOURCE_CLASSES, TARGET_CLASSES = 10, 5


def make_target(out: str, seed: int, train_per_class: int = 16, val_per_class: int = 20) -> None:
    """Classes ``SOURCE_CLASSES .. +TARGET_CLASSES`` only (none seen by the source), 64 px."""
    scratch, total = out + ".all", SOURCE_CLASSES + TARGET_CLASSES
    make_imagefolder(scratch, num_classes=total, train_per_class=train_per_class, val_per_class=val_per_class,
                     image_size=64, seed=seed)
    for split in ("train", "val"):
        for name in class_names(total)[SOURCE_CLASSES:]:
            shutil.move(os.path.join(scratch, split, name), os.path.join(out, split, name))
    shutil.rmtree(scratch)


def train(data: str, work: str, epochs: int, seed: int, *extra: str) -> float:
    """``main.py train``; returns the last epoch's val top-1 (``checkpoint-latest/meta.json``)."""
    argv = [sys.executable, os.path.join(ROOT, "main.py"), "train", "--model", "efficientnet-b0", data,
            "--workspace", work, "--epochs", str(epochs), "--seed", str(seed), *RECIPE, *extra]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    with open(os.path.join(work, "checkpoint-latest", "meta.json")) as handle:
        return float(json.load(handle)["metrics"]["val.top1"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--source-epochs", type=int, default=SOURCE_EPOCHS)
    parser.add_argument("--target-epochs", type=int, default=TARGET_EPOCHS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    source_data, source_work = os.path.join(args.out, "source"), os.path.join(args.out, "source_run")
    start = time.time()
    make_imagefolder(source_data, **SOURCE_DATA)
    source_top1 = train(source_data, source_work, args.source_epochs, 0)
    source_seconds = time.time() - start
    best = os.path.join(source_work, "model_best")
    rows = []
    for seed in args.seeds:
        target = os.path.join(args.out, f"target{seed}")
        make_target(target, seed=seed)
        row = {"seed": seed}
        for name, extra in (("scratch", []), ("fine_tune", ["--pretrained-from-file", best]),
                            ("fine_tune_freeze1", ["--pretrained-from-file", best, "--freeze-epochs", "1"])):
            row[name] = train(target, os.path.join(args.out, f"{name}{seed}"), args.target_epochs, seed, *extra)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"source_val_top1": source_top1, "source_seconds": round(source_seconds, 1), "runs": rows,
              "target": "5 unseen classes, 16 train / 20 val images each, 64 px",
              "target_epochs": args.target_epochs, "recipe": " ".join(RECIPE)}
    for name in ("scratch", "fine_tune", "fine_tune_freeze1"):
        values = [r[name] for r in rows]
        result[f"{name}_mean"] = round(sum(values) / len(values), 4)
        result[f"{name}_min"] = min(values)
    result["margin_min"] = round(min(r["fine_tune"] - r["scratch"] for r in rows), 4)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
