"""`make demo`: the whole EfficientNet workflow on built-in data, on CPU.

1. generate a deterministic ImageFolder dataset of coloured shapes;
2. train efficientnet-b0 briefly (reduced resolution) with checkpoints + DLLogger;
3. evaluate the best checkpoint;
4. classify a validation image (top-5 with class names);
5. export a SavedModel and check that it reproduces the Keras model.

Every step is a real ``main.py`` command, printed before it runs.
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, title):
    """Runs ``cmd`` (list) from the repository root, echoing it; returns seconds taken."""
    print(f"\n=== {title}\n$ {' '.join(cmd)}", flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return time.time() - start


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_output", help="where everything is written")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    out = os.path.abspath(args.out)
    data, work = os.path.join(out, "shapes"), os.path.join(out, "efficientnet-b0")
    py = sys.executable
    times = {}
    times["data"] = run([py, "-m", "dataset.make_synthetic_imagefolder", "--out", data, "--num-classes", "10",
                         "--train-per-class", "80", "--val-per-class", "20", "--image-size", "64"],
                        "1/5 generate the built-in dataset")
    times["train"] = run([py, "main.py", "train", "--model", "efficientnet-b0", data, "--workspace", work,
                          "--image-size", str(args.image_size), "--epochs", str(args.epochs), "-b", "32",
                          "--optimizer", "adam", "--lr", "0.002", "--lr-batch", "32", "--warmup", "1",
                          "--mixup", "0", "--augmentation", "none", "--log-every", "10"],
                         "2/5 train efficientnet-b0 (reduced resolution, CPU)")
    times["eval"] = run([py, "main.py", "eval", "--model", "efficientnet-b0", data, "--workspace", work,
                         "--checkpoint", os.path.join(work, "model_best"), "-b", "50"],
                        "3/5 evaluate the best checkpoint")
    image = sorted(glob.glob(os.path.join(data, "val", "*", "*.jpg")))[0]
    times["infer"] = run([py, "scripts/classify.py", "--arch", "efficientnet-b0", "--workspace", work,
                          "--checkpoint", os.path.join(work, "model_best"), "--image", image],
                         "4/5 classify a validation image")
    saved = os.path.join(work, "saved_model")
    times["export"] = run([py, "main.py", "export", "--model", "efficientnet-b0", "--workspace", work,
                           "--checkpoint", os.path.join(work, "model_best"), "--export-dir", saved,
                           "--verify", image], "5/5 export a SavedModel (and verify it against Keras)")
    print("\nOutputs:")
    print(f"  dataset           {data}")
    print(f"  checkpoints       {work}/checkpoint-latest, {work}/model_best")
    print(f"  DLLogger log      {work}/raport.json")
    print(f"  SavedModel        {saved}")
    print("Times: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()) + f", total {sum(times.values()):.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
