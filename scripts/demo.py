"""`make demo`: the EfficientNet and Mask R-CNN workflows on built-in data, on CPU.

EfficientNet-B0:
1. generate a deterministic ImageFolder dataset of coloured shapes;
2. train efficientnet-b0 briefly (reduced resolution) with checkpoints + DLLogger;
3. evaluate the best checkpoint;
4. classify a validation image (top-5 with class names);
5. export a SavedModel and check that it reproduces the Keras model.

Mask R-CNN:
6. generate a deterministic COCO-format dataset of shapes (polygon/RLE masks);
7. train Mask R-CNN briefly (small images, narrow backbone) and evaluate with pycocotools;
8. draw predictions on validation images (PNG) and write COCO results JSON;
9. export a SavedModel and check it against the Keras model.

Every step is a real ``main.py`` command, printed before it runs. Each run leaves ``report.html`` (curves,
per-class metrics, PR curves or confusion, worst images); the demo ends by printing their paths.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

sys.path.insert(0, ROOT)
from scripts.convergence_check import CI_RECIPE, final_metrics, train_argv  # noqa: E402  (needs ROOT on the path)

# Mask R-CNN demo recipe: the CI convergence recipe (narrow ResNet-50-FPN from random weights, Adam with
# warm-up and two 10x decays at 80 % / 95 %) on 128 px images with a 128-channel mask head (the CI recipe
# keeps 256: the mask head was half of the step, so this step is ~2.1x faster), 1200 steps: bbox / segm
# AP50 0.861 / 0.843 in 843 s of training + evaluation on 2 cores (the 256-channel head at 800 steps gave
# 0.72-0.80 in 702-1140 s; benchmarks/RESULTS.md). Detections below 0.05 (torchvision's and detectron2's
# threshold) are dropped before the mask head and the COCO evaluation.
MRCNN_RECIPE = dataclasses.replace(CI_RECIPE, image_size=128, num_train=400, num_val=50, epochs=12,
                                   steps_per_epoch=100, mask_channels=128, score_threshold=0.05)
DRAW_SCORE = 0.5  # detections drawn in the PNGs (all of them go to detections.json)
EVAL_EVERY = 4  # Mask R-CNN validations (AP, val loss) at epochs 4, 8 and 12: points on the report's curves


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
    parser.add_argument("--skip", nargs="*", default=[], choices=["efficientnet", "mask-rcnn"],
                        help="parts of the demo to leave out")
    return parser.parse_args()


def efficientnet_demo(args, out, times, outputs):
    """Steps 1-5 (see the module docstring)."""
    data, work = os.path.join(out, "shapes"), os.path.join(out, "efficientnet-b0")
    py = sys.executable
    times["effnet data"] = run([py, "-m", "dataset.make_synthetic_imagefolder", "--out", data, "--num-classes",
                                "10", "--train-per-class", "80", "--val-per-class", "20", "--image-size", "64"],
                               "1/9 generate the built-in classification dataset")
    times["effnet train"] = run([py, "main.py", "train", "--model", "efficientnet-b0", data, "--workspace", work,
                                 "--image-size", str(args.image_size), "--epochs", str(args.epochs), "-b", "32",
                                 "--optimizer", "adam", "--lr", "0.002", "--lr-batch", "32", "--warmup", "1",
                                 "--mixup", "0", "--augmentation", "none", "--bn-momentum", "0.9",
                                 "--log-every", "10"],
                                "2/9 train efficientnet-b0 (reduced resolution, CPU)")
    best = os.path.join(work, "model_best")
    times["effnet eval"] = run([py, "main.py", "eval", "--model", "efficientnet-b0", data, "--workspace", work,
                                "--checkpoint", best, "-b", "50"], "3/9 evaluate the best checkpoint")
    image = sorted(glob.glob(os.path.join(data, "val", "*", "*.jpg")))[0]
    times["effnet infer"] = run([py, "scripts/classify.py", "--arch", "efficientnet-b0", "--workspace", work,
                                 "--checkpoint", best, "--image", image], "4/9 classify a validation image")
    saved = os.path.join(work, "saved_model")
    times["effnet export"] = run([py, "main.py", "export", "--model", "efficientnet-b0", "--workspace", work,
                                  "--checkpoint", best, "--export-dir", saved, "--overwrite", "--verify", image],
                                 "5/9 export a SavedModel (and verify it against Keras)")
    outputs += [("EfficientNet report", os.path.join(work, "report.html")),
                ("classification data", data), ("EfficientNet checkpoints", f"{work}/checkpoint-latest, model_best"),
                ("EfficientNet DLLogger log", f"{work}/raport.json"), ("EfficientNet SavedModel", saved)]


def mask_rcnn_demo(args, out, times, outputs):
    """Steps 6-9 (see the module docstring)."""
    data, work = os.path.join(out, "coco_shapes"), os.path.join(out, "mask-rcnn")
    py = sys.executable
    recipe = MRCNN_RECIPE
    times["mrcnn data"] = run([py, "-m", "dataset.make_synthetic_shapes", "--out", data, "--num-train",
                               str(recipe.num_train), "--num-val", str(recipe.num_val), "--image-size",
                               str(recipe.image_size), "--seed", str(recipe.data_seed)],
                              "6/9 generate the built-in COCO-format shapes dataset")
    steps = recipe.epochs * recipe.steps_per_epoch
    times["mrcnn train"] = run([py, "main.py", *train_argv(recipe, data, work), "--eval-every", str(EVAL_EVERY)],
                               f"7/9 train Mask R-CNN from random weights ({steps} steps at {recipe.image_size} px, "
                               f"narrow backbone, CPU), evaluated every {EVAL_EVERY} epochs (COCO AP, val loss)")
    images = sorted(glob.glob(os.path.join(data, "val", "*")))[:4]
    predictions = os.path.join(work, "predictions")
    times["mrcnn infer"] = run([py, "main.py", "infer", "--model", "mask-rcnn", "--model_dir", work,
                                "--output_dir", predictions, "--score_threshold", str(DRAW_SCORE), *images],
                               f"8/9 draw predictions (score >= {DRAW_SCORE}) on validation images")
    saved = os.path.join(work, "saved_model")
    times["mrcnn export"] = run([py, "main.py", "export", "--model", "mask-rcnn", "--model_dir", work,
                                 "--export_dir", saved, "--overwrite", "--verify", images[0]],
                                "9/9 export a SavedModel (and verify it against Keras)")
    metrics = final_metrics(work)
    drawn = sorted(glob.glob(os.path.join(predictions, "*_pred.png")))
    outputs += [("Mask R-CNN report", os.path.join(work, "report.html")),
                ("Mask R-CNN bbox / segm AP50 (val)", f"{metrics['val.bbox/AP50']:.3f} / {metrics['val.segm/AP50']:.3f}"),
                ("Mask R-CNN drawn prediction", drawn[0] if drawn else "(none)")]
    outputs += [("COCO shapes data", data), ("Mask R-CNN checkpoints", f"{work}/checkpoint-latest, model_best"),
                ("Mask R-CNN DLLogger log (COCO AP)", f"{work}/raport.json"),
                ("Mask R-CNN predictions", f"{predictions}/*_pred.png, detections.json"),
                ("Mask R-CNN SavedModel", saved)]


def main() -> int:
    args = parse_args()
    out = os.path.abspath(args.out)
    times, outputs = {}, []
    if "efficientnet" not in args.skip:
        efficientnet_demo(args, out, times, outputs)
    if "mask-rcnn" not in args.skip:
        mask_rcnn_demo(args, out, times, outputs)
    print("\nOutputs:")
    for name, path in outputs:
        print(f"  {name:<36} {path}")
    print("Times: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()) + f", total {sum(times.values()):.0f}s")
    reports = [path for name, path in outputs if name.endswith(" report")]
    print("\nOpen in a browser (curves, per-class metrics, worst images, TensorBoard: "
          "tensorboard --logdir <run>/tensorboard):\n" + "\n".join(f"  {path}" for path in reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
