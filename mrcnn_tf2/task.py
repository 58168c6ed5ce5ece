"""Instance-segmentation task: Mask R-CNN, COCO inputs, losses and COCO metrics.

Batches are ``(features, labels)`` dicts from :func:`mrcnn_tf2.data.pipeline.build_dataset`
(or :func:`mrcnn_tf2.data.synthetic.synthetic_dataset`):

  features  images [B, H, W, 3] float32, image_info [B, 5] float32, source_ids [B] int64
  labels    gt_boxes [B, M, 4] float32, gt_classes [B, M] int32, gt_masks [B, M, G, G] float32

The loss is the weighted sum of the RPN, Fast R-CNN and mask losses of
:mod:`mrcnn_tf2.losses` (the trainer adds L2 weight decay). Validation runs the
inference graph and feeds the detections to a pycocotools evaluator on the host.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Dict, Optional

import tensorflow as tf

from common.training.task import Task, local_batch_size
from mrcnn_tf2 import losses
from mrcnn_tf2.config import MaskRCNNConfig
from mrcnn_tf2.data.inputs import InputConfig
from mrcnn_tf2.data.pipeline import build_dataset
from mrcnn_tf2.data.sources import DataSources
from mrcnn_tf2.data.synthetic import synthetic_dataset
from mrcnn_tf2.modeling.mask_rcnn import MaskRCNN

_LOG = logging.getLogger(__name__)
DETECTION_KEYS = ("num_detections", "detection_boxes", "detection_classes", "detection_scores", "detection_masks")


@dataclasses.dataclass
class DetectionTaskConfig:
    """Data-side settings of a Mask R-CNN run.

    Attributes:
      model: the model configuration.
      inputs: resize/pad/flip settings of the input pipeline.
      data: resolved training/validation sources (None with synthetic data).
      synthetic: random inputs of the right shapes (benchmarks, smoke tests).
      eval_samples: cap on validation images (NVIDIA's ``--eval_samples``).
      seed: base seed (shuffling, flips, samplers).
    """

    model: MaskRCNNConfig
    inputs: InputConfig
    data: Optional[DataSources] = None
    synthetic: bool = False
    eval_samples: Optional[int] = None
    seed: int = 0


class InstanceSegmentationTask(Task):
    """Mask R-CNN on COCO-format data (TFRecords or JSON + images)."""

    name = "instance_segmentation"
    validation_reduction = "concat"

    def __init__(self, config: DetectionTaskConfig):
        self.config = config
        if not config.synthetic and config.data is None:
            raise ValueError("Mask R-CNN needs --data_dir (or --use_synthetic_data)")
        self.evaluator = None
        self._images_seen = 0

    # ------------------------------------------------------------------ model
    def build_model(self) -> MaskRCNN:
        """A MaskRCNN whose variables exist (one inference call on zeros)."""
        return built_model(self.config.model, self.config.seed)

    @property
    def padded_size(self):
        return self.config.inputs.batch_padded_size()

    def checkpoint_items(self):
        return {}

    # ------------------------------------------------------------------ data
    def build_train_dataset(self, global_batch: int, epoch: int, input_context=None) -> tf.data.Dataset:
        if self.config.synthetic:
            batch = local_batch_size(global_batch, input_context)
            return synthetic_dataset(self.config.model, self.config.inputs, batch, training=True)
        data = self.config.data
        return build_dataset(data.train, self.config.inputs, training=True, batch_size=global_batch,
                             seed=self.config.seed, epoch=epoch, input_context=input_context,
                             category_ids=data.category_ids)

    def build_eval_dataset(self, global_batch: int, input_context=None) -> tf.data.Dataset:
        local_batch = local_batch_size(global_batch, input_context)
        if self.config.synthetic:
            return synthetic_dataset(self.config.model, self.config.inputs, local_batch, training=False)
        data = self.config.data
        ds = build_dataset(data.val, self.config.inputs, training=False, batch_size=global_batch,
                           seed=self.config.seed, input_context=input_context, category_ids=data.category_ids)
        if self.config.eval_samples:
            pipelines = input_context.num_input_pipelines if input_context else 1
            ds = ds.take(-(-self.config.eval_samples // (local_batch * pipelines)))
        return ds

    def steps_per_epoch(self, global_batch: int) -> Optional[int]:
        if self.config.synthetic or self.config.data is None:
            return None
        return max(self.config.data.num_train // global_batch, 1) if self.config.data.num_train else None

    # ------------------------------------------------------------------ losses
    def train_loss(self, model, batch, training: bool = True):
        """Weighted sum of the five Mask R-CNN losses; logs each of them."""
        features, labels = batch
        outputs = model({**features, **labels}, training=training)
        terms = compute_losses(outputs, self.config.model)
        total = tf.add_n(list(terms.values()))
        return total, terms

    # -------------------------------------------------------------- validation
    def validation_step(self, model, batch) -> Dict[str, tf.Tensor]:
        """Detections, ``image_info``, ``source_ids`` and the ground truth boxes/classes per image, and (Keras
        model) the five training losses of the batch in eval mode (``loss.*``, each ``[B]``: the batch's value
        per image)."""
        features, labels = batch
        inputs = {"images": features["images"], "image_info": features["image_info"]}
        # the Keras model (not an onnxruntime / SavedModel runner) with ground truth also gives the losses
        with_targets = isinstance(model, MaskRCNN) and all(key in labels for key in ("gt_boxes", "gt_classes", "gt_masks"))
        outputs = model({**inputs, **labels}, training=False, with_targets=True) if with_targets else model(
            inputs, training=False)
        images = tf.shape(features["source_ids"])[0]
        result = {k: outputs[k] for k in DETECTION_KEYS}
        if with_targets:
            terms = compute_losses(outputs, self.config.model)
            terms["loss"] = tf.add_n(list(terms.values()))
            result.update({f"loss.{name}": tf.fill([images], value) for name, value in terms.items()})
        if "gt_boxes" in labels:
            result.update(gt_boxes=labels["gt_boxes"], gt_classes=labels["gt_classes"])
        return {**result, "image_info": features["image_info"], "source_ids": features["source_ids"]}

    def begin_validation(self) -> None:
        from mrcnn_tf2.evaluation import CocoEvaluator

        from mrcnn_tf2.worst import WorstImages

        self._images_seen, self._loss_sums, self.worst = 0, {}, WorstImages()
        if self.config.synthetic:
            self.evaluator = None
            return
        if self.evaluator is None:
            reference = self.config.data.reference
            paste = self.config.model.detection.mask_paste
            if reference is None:
                self.evaluator = CocoEvaluator(self.config.data.eval_file, include_masks=True, mask_paste=paste)
            else:  # the ground truth training uses: dropped boxes and bad annotations are not scored
                self.evaluator = CocoEvaluator(reference.ground_truth(), include_masks=True, mask_paste=paste)
                _LOG.info("COCO evaluation ground truth: %d instances; not scored: %s",
                          len(self.evaluator.coco_gt.dataset["annotations"]), reference.excluded_summary())
        self.evaluator.reset()

    def update_validation(self, outputs) -> int:
        count = int(outputs["source_ids"].shape[0])
        self._images_seen += count
        for key in (k for k in outputs if k.startswith("loss.")):
            self._loss_sums[key[5:]] = self._loss_sums.get(key[5:], 0.0) + float(outputs[key].sum())
        if self.evaluator is not None:
            self.evaluator.update({k: outputs[k] for k in DETECTION_KEYS}, outputs["image_info"], outputs["source_ids"])
            if "gt_boxes" in outputs:
                self.worst.update(outputs)
        return count

    def write_validation_report(self, folder: str):
        """``per_class.csv`` (bbox and segm AP / AP50 / AP75 / AR100 per category, from the evaluator's own
        per-category arrays), ``per_class_ap.png`` and ``pr_curves.png`` of the last validation; the three weakest
        categories printed. Returns the paths."""
        import csv
        import os

        rows = self.evaluator.per_class_rows() if self.evaluator is not None else []
        if not rows:
            return []
        os.makedirs(folder, exist_ok=True)
        iou_types = list(self.evaluator.per_category)
        header = ("category_id", "name", *(f"{t}_{m}" for t in iou_types for m in ("AP", "AP50", "AP75", "AR100")))
        path = os.path.join(folder, "per_class.csv")
        with open(path + ".tmp", "w", newline="") as handle:
            csv.writer(handle).writerows([header, *[(r[0], r[1], *(round(v, 4) for v in r[2:])) for r in rows]])
        os.replace(path + ".tmp", path)
        from mrcnn_tf2.evaluation import draw_reports

        pictures = draw_reports(folder, self.evaluator) + self._draw_worst(folder)
        scored = sorted((r for r in rows if r[2] == r[2]), key=lambda r: r[2])[:3]  # r[2] == r[2]: not NaN
        print("weakest classes (bbox AP): " + ", ".join(f"{r[1]} {r[2]:.3f}" for r in scored) +
              f"\nper-class AP: {path}", flush=True)
        return [path, *pictures]

    def per_class_metrics(self):
        """``val.{bbox,segm}/{AP,AP50,AP75,AR100}/<class>`` from the evaluator's per-category arrays (NaN: no
        ground truth of that class)."""
        if self.evaluator is None:
            return {}
        iou_types = list(self.evaluator.per_category)
        metrics = {}
        for row in self.evaluator.per_class_rows():
            values = iter(row[2:])
            for iou_type in iou_types:
                for name in ("AP", "AP50", "AP75", "AR100"):
                    metrics[f"val.{iou_type}/{name}/{row[1]}"] = float(next(values))
        return metrics

    def validation_curves(self):
        """bbox precision-recall at IoU 0.50 and 0.75, all classes (mean) and per class, from COCOeval's arrays."""
        from mrcnn_tf2.evaluation import pr_curves

        return pr_curves(self.evaluator) if self.evaluator is not None else {}

    def _draw_worst(self, folder: str):
        """``worst/`` of the last validation (never stops a run: a drawing failure is logged)."""
        try:
            return self.worst.draw(folder, self.config.data.reference, self.config.data.class_names)
        except (OSError, ValueError) as error:
            _LOG.warning("worst/ not drawn: %s", error)
            return []

    def reduce_validation(self, sums) -> Dict[str, float]:
        """COCO metrics and the mean validation losses (``loss``, ``rpn_score_loss``, ...: per image, no weight
        decay)."""
        losses_ = {name: total / max(self._images_seen, 1) for name, total in self._loss_sums.items()}
        if self.evaluator is None:
            return {"images": float(self._images_seen), **losses_}
        metrics = self.evaluator.evaluate()
        from mrcnn_tf2.evaluation import format_metrics_table

        print(format_metrics_table(metrics), flush=True)
        return {**losses_, **metrics}


def built_model(config: MaskRCNNConfig, seed: Optional[int] = 0) -> MaskRCNN:
    """A MaskRCNN with its variables created (one inference call on zeros)."""
    model = MaskRCNN(config, seed=seed)
    height, width = config.image_size
    model({"images": tf.zeros([1, height, width, 3]),
           "image_info": tf.constant([[height, width, 1.0, height, width]], tf.float32)}, training=False)
    return model


def compute_losses(outputs: Dict[str, object], config: MaskRCNNConfig) -> Dict[str, tf.Tensor]:
    """Weighted loss terms of a training forward pass (float32 scalars)."""
    weights = config.losses
    rpn_score, rpn_box = losses.rpn_losses(outputs["rpn_scores"], outputs["rpn_deltas"], outputs["rpn_targets"],
                                           samples_per_image=config.rpn.batch_size_per_image)
    cls, box = losses.fast_rcnn_losses(outputs["class_logits"], outputs["box_deltas"], outputs["roi_targets"])
    slots = outputs["mask_logits"].shape[1]
    mask_classes = outputs["roi_targets"].gt_classes[:, :slots]
    mask = losses.mask_loss(outputs["mask_logits"], outputs["mask_targets"], mask_classes,
                            tf.logical_and(mask_classes > 0, outputs["roi_targets"].valid[:, :slots]))
    return {"rpn_score_loss": weights.rpn_score_weight * rpn_score,
            "rpn_box_loss": weights.rpn_box_weight * rpn_box,
            "fast_rcnn_class_loss": weights.fast_rcnn_class_weight * cls,
            "fast_rcnn_box_loss": weights.fast_rcnn_box_weight * box,
            "mask_loss": weights.mask_weight * mask}
