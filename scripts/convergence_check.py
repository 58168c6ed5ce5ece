"""Mask R-CNN convergence check: train from random weights on generated shapes, print COCO AP.

Writes the synthetic shapes data set (``dataset.make_synthetic_shapes``: circles, squares
and triangles, COCO format), trains ``main.py train --model mask-rcnn`` on it from random
weights (no ImageNet checkpoint) and prints the 12 bbox and 12 segm COCO numbers that the
train command's final evaluation measured (pycocotools). The exit status is 1 when bbox
AP50 or segm AP50 stays below ``--min-bbox-ap50`` / ``--min-segm-ap50``.

The default model is the real ResNet-50-FPN Mask R-CNN (width 1.0, 256-channel FPN, RPN
and heads); only proposal and RoI counts are lowered for the small images. It is meant
for a machine with time to spare (a GPU, or a long CPU run)::

    python scripts/convergence_check.py --out /tmp/mrcnn_convergence
    python scripts/convergence_check.py --out /tmp/mrcnn_quick --epochs 2 --steps-per-epoch 10  # smoke run

``tests/mrcnn_tf2/test_convergence.py`` runs :data:`CI_RECIPE`, the same recipe with a
narrow network and fewer steps, within the CPU budget of CI (``--ci`` runs it here).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BBOX_AP50, SEGM_AP50 = "val.bbox/AP50", "val.segm/AP50"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Data, model and schedule of a convergence run from random weights.

    Attributes:
      image_size: side of the square generated images and of the network input (multiple of 64).
      num_train / num_val: generated images per split.
      data_seed: seed of the generated data set.
      width: ResNet-50 channel multiplier (``backbone.width_multiplier``).
      channels: channels of the FPN and the RPN conv (256 in the real model).
      mask_channels: channels of the mask head's convs (256 in the real model).
      rois_per_image: RoIs sampled per image for the box head (a quarter go to the mask head).
      batch_size: images per step.
      epochs / steps_per_epoch: length of the run.
      optimizer: ``adam`` (from random weights SGD needs several times more steps) or ``sgd``.
      lr_per_image: peak rate per image (``--learning_rate_values`` scales it by the batch).
      warmup_epochs: linear warm-up from 0.
      decay_at: fractions of the run where the rate drops 10x (twice).
      clip_grad_norm: global gradient-norm clip (from-scratch training needs it).
      seed: training seed (initial weights, sampling).
      score_threshold: detections below it are dropped before the mask head and COCO evaluation
        (``detection.score_threshold``; NVIDIA's 0.0 keeps all 100, torchvision and detectron2 use 0.05).
    """

    image_size: int = 256
    num_train: int = 200
    num_val: int = 32
    data_seed: int = 0
    width: float = 1.0
    channels: int = 256
    mask_channels: int = 256
    rois_per_image: int = 64
    batch_size: int = 4
    epochs: int = 24
    steps_per_epoch: int = 50
    optimizer: str = "adam"
    lr_per_image: float = 0.00025
    warmup_epochs: float = 0.5
    decay_at: tuple = (0.8, 0.95)
    clip_grad_norm: float = 5.0
    seed: int = 0
    score_threshold: float = 0.0

    def config_overrides(self) -> List[str]:
        """``--config`` values: network widths and the proposal / RoI counts."""
        return [f"backbone.width_multiplier={self.width}", f"fpn.channels={self.channels}",
                f"rpn.channels={self.channels}", f"mask_head.channels={self.mask_channels}",
                "rpn.pre_nms_topk_train=500", "rpn.post_nms_topk_train=200",
                "rpn.pre_nms_topk_test=200", "rpn.post_nms_topk_test=100",
                f"roi_sampler.batch_size_per_image={self.rois_per_image}",
                f"detection.score_threshold={self.score_threshold}"]

    def schedule(self) -> List[str]:
        """``--learning_rate_*`` flags: warm-up, then two 10x decays at ``decay_at``."""
        values = [self.lr_per_image, self.lr_per_image / 10, self.lr_per_image / 100]
        bounds = [self.warmup_epochs] + [round(f * self.epochs, 3) for f in self.decay_at]
        return (["--optimizer", self.optimizer, "--init_learning_rate", "0.0", "--learning_rate_values", *map(str, values),
                 "--learning_rate_boundaries", *map(str, bounds)])


#: The CI test's recipe: a narrow ResNet-50-FPN (see tests/mrcnn_tf2/test_convergence.py).
CI_RECIPE = Recipe(width=0.25, channels=128, epochs=8)


def make_data(recipe: Recipe, out_dir: str) -> str:
    """Writes the shapes data set of ``recipe`` under ``out_dir``; returns its root."""
    from dataset.make_synthetic_shapes import make_dataset

    make_dataset(out_dir, num_train=recipe.num_train, num_val=recipe.num_val, image_size=recipe.image_size,
                 seed=recipe.data_seed)
    return out_dir


def train_argv(recipe: Recipe, data_dir: str, model_dir: str) -> List[str]:
    """``main.main`` arguments that train (and finally evaluate) ``recipe``."""
    size = str(recipe.image_size)
    return ["train", "--model", "mask-rcnn", "--data_dir", data_dir, "--model_dir", model_dir,
            "--image_size", size, size, "--finetune_bn", "--seed", str(recipe.seed),
            "--epochs", str(recipe.epochs), "--steps_per_epoch", str(recipe.steps_per_epoch),
            "--train_batch_size", str(recipe.batch_size), "--eval_batch_size", "8",
            "--clip_grad_norm", str(recipe.clip_grad_norm), "--log_every", str(recipe.steps_per_epoch),
            *recipe.schedule(), "--config", *recipe.config_overrides()]


def final_metrics(model_dir: str) -> dict:
    """``val.*`` COCO metrics of the run's best checkpoint (``model_best/meta.json``)."""
    with open(os.path.join(model_dir, "model_best", "meta.json")) as f:
        return json.load(f)["metrics"]


def run(recipe: Recipe, out_dir: str) -> dict:
    """Generates the data, trains and evaluates; returns the final ``val.*`` metrics."""
    import main

    data_dir = make_data(recipe, os.path.join(out_dir, "data"))
    model_dir = os.path.join(out_dir, "run")
    if main.main(train_argv(recipe, data_dir, model_dir)) != 0:
        raise RuntimeError("training failed")
    return final_metrics(model_dir)


def _parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    default = Recipe()
    parser.add_argument("--out", required=True, help="data set, checkpoints and logs go here")
    parser.add_argument("--ci", action="store_true", help="start from the CI test's narrow recipe")
    parser.add_argument("--epochs", type=int, default=None, help=f"default: {default.epochs}")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help=f"default: {default.steps_per_epoch}")
    parser.add_argument("--image-size", type=int, default=None, help=f"default: {default.image_size}")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default: {default.batch_size}")
    parser.add_argument("--width", type=float, default=None, help=f"ResNet width multiplier; default {default.width}")
    parser.add_argument("--num-train", type=int, default=None, help=f"default: {default.num_train}")
    parser.add_argument("--min-bbox-ap50", type=float, default=0.7)
    parser.add_argument("--min-segm-ap50", type=float, default=0.6)
    return parser.parse_args(argv)


def _recipe(args: argparse.Namespace) -> Recipe:
    """:class:`Recipe` (or :data:`CI_RECIPE` with ``--ci``) with the flags that were given."""
    names = {"epochs": "epochs", "steps_per_epoch": "steps_per_epoch", "image_size": "image_size",
             "batch_size": "batch_size", "width": "width", "num_train": "num_train"}
    given = {field: getattr(args, flag) for flag, field in names.items() if getattr(args, flag) is not None}
    return dataclasses.replace(CI_RECIPE if args.ci else Recipe(), **given)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the check; prints the recipe, the AP table and the wall time."""
    from mrcnn_tf2.evaluation import format_metrics_table

    args = _parse_args(argv)
    recipe = _recipe(args)
    print(f"recipe: {recipe}", flush=True)
    start = time.time()
    metrics = run(recipe, args.out)
    table = {k[len("val."):]: v for k, v in metrics.items() if k.startswith("val.")}
    print(f"\nCOCO metrics after {recipe.epochs * recipe.steps_per_epoch} steps "
          f"({time.time() - start:.0f} s):\n{format_metrics_table(table)}")
    passed = metrics[BBOX_AP50] >= args.min_bbox_ap50 and metrics[SEGM_AP50] >= args.min_segm_ap50
    print(f"bbox AP50 {metrics[BBOX_AP50]:.3f} (>= {args.min_bbox_ap50}), segm AP50 {metrics[SEGM_AP50]:.3f} "
          f"(>= {args.min_segm_ap50}): {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
