"""Instance-segmentation experiments: the configs and every registered Mask R-CNN name (TensorFlow-free).

A name is a whole experiment (TF Model Garden's ``exp_factory``): each function below returns a
complete :class:`SegmentationExperiment`. The detector takes any backbone of :mod:`backbones`; a new
model is one function decorated with :func:`common.command.registry.register_experiment`.

* ``mask-rcnn`` (alias ``mask-rcnn-r50-fpn``): NVIDIA's TF2 recipe, ResNet-50 FPN.
* ``mask-rcnn-torchvision``: torchvision's ``maskrcnn_resnet50_fpn`` (backbone layout, anchors, proposal
  and detection filters, input transform), for its COCO weights (``--preset torchvision`` on any
  Mask R-CNN experiment applies the same fields).
* ``mask-rcnn-finetune``: torchvision's COCO weights fine-tuned on a small data set of your own (tens to
  hundreds of images): large-scale jitter, 12 short epochs, one warm-up epoch, a lower rate (docs/own-data.md).
* ``mask-rcnn-efficientnet-b0-fpn``: NVIDIA's recipe on an EfficientNet-B0 backbone (BatchNorm trained,
  nothing frozen: EfficientNet has no frozen-stage convention and no ImageNet checkpoint here).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from backbones.configs import efficientnet
from common.command.cli import POSITIVE_INT, UNIT_FLOAT, flag
from common.command.config import DataConfig, Experiment, TaskConfig, TrainerConfig, check
from common.command.options import ExportOptions, InferOptions
from common.command.registry import register_experiment
from mrcnn_tf2.config import AUGMENTATIONS, PRESETS, MaskRCNNConfig, preset_model_fields

FAMILY = "mask-rcnn"
BACKENDS = ("tfdata", "synthetic")
BEST_METRIC = "segm/AP"
DRAW_SCORE = 0.5  # infer draws detections scoring at least this (--score-threshold)
DRAW_OVERLAP = 0.5  # the class-wise detection NMS IoU (``detection.nms_threshold``), across classes (--draw-overlap)


@dataclasses.dataclass(frozen=True)
class DetectionData(DataConfig):
    """COCO-format data of a Mask R-CNN run (the shared fields are :class:`common.command.config.DataConfig`'s).

    Attributes:
      data_dir: TFRecords (``train*``/``val*.tfrecord``) or a COCO layout (``annotations/`` + images).
      backend: ``tfdata`` | ``synthetic`` (random inputs of the right shapes).
      eval_file, eval_images: validation annotation JSON and image folder (custom layouts).
      train_annotations, train_images: training annotation JSON and image folder.
      image_size: ``(short side target, long side max)`` of the aspect-keeping resize (None: the
        preset's, NVIDIA 832 x 1344, torchvision 800 x 1333).
      num_classes: classes including background (None: from the annotations, else 91).
      class_names, category_ids: filled in from the annotations (infer/export labels).
      val_split: hold out this share of the training images as validation (:mod:`mrcnn_tf2.data.val_split`).
      augment: training augmentation preset (:data:`mrcnn_tf2.config.AUGMENTATIONS`; ``flip``: NVIDIA's).
      scale_range: ``(min, max)`` resize factors of scale jitter (overrides the preset's).
      color_jitter: random brightness, contrast and saturation in training.
    """

    eval_file: Optional[str] = None
    eval_images: Optional[str] = None
    train_annotations: Optional[str] = None
    train_images: Optional[str] = None
    image_size: Optional[Tuple[int, int]] = None
    category_ids: Tuple[int, ...] = ()
    val_split: Optional[float] = None
    augment: str = "flip"
    scale_range: Optional[Tuple[float, float]] = None
    color_jitter: bool = False

    def __post_init__(self):
        check(self.backend in BACKENDS, f"mask-rcnn --data-backend must be one of {BACKENDS}. Received: {self.backend!r}")
        check(self.augment in AUGMENTATIONS, f"mask-rcnn --augmentation must be one of {tuple(AUGMENTATIONS)}. "
                                             f"Received: {self.augment!r}")
        check(self.scale_range is None or (len(self.scale_range) == 2 and 0 < self.scale_range[0] <= self.scale_range[1]),
              f"--scale-range takes MIN MAX with 0 < MIN <= MAX. Received: {self.scale_range}")
        check(self.val_split is None or 0 < self.val_split < 1,
              f"--val-split must be a share between 0 and 1. Received: {self.val_split}")


@dataclasses.dataclass(frozen=True)
class SegmentationTaskConfig(TaskConfig):
    """Architecture and optimisation of a Mask R-CNN run (NVIDIA's TF2 recipe).

    Attributes:
      model: the whole Mask R-CNN config (``--config`` overrides land here).
      optimizer: ``sgd`` (NVIDIA, with ``momentum``) | ``adam`` (trains faster from random weights).
      lr, warmup_epochs, warmup_init_lr, lr_boundaries, lr_values: NVIDIA's per-image rates (``lr_batch``
        1, times the global batch): warm-up from 0 to 0.01 over 0.3 epochs, 0.001 from epoch 8, 0.0001
        from epoch 10 (NVIDIA's ``--init_learning_rate 0 --learning_rate_values 1e-2 1e-3 1e-4
        --learning_rate_boundaries 0.3 8 10``).
      backbone_checkpoint: ImageNet ResNet-50 weights: Keras .h5, a TF checkpoint, or torchvision's
        ``resnet50-*.pth`` / its ``.npz`` (the backbone then takes torchvision's layout).
      pretrained_from_file: initial weights of the whole model: a TF checkpoint / Keras weights file, or
        torchvision's ``maskrcnn_resnet50_fpn`` state_dict (``.pth``/``.npz``; the model then takes
        torchvision's layout: backbone, anchors, proposal and detection filters).
      preset: ``nvidia`` (NVIDIA's TF2 recipe) or ``torchvision`` (its ``maskrcnn_resnet50_fpn``:
        backbone layout, anchors, proposal/detection filters, input transform; ``mrcnn_tf2.config``;
        the ``mask-rcnn-torchvision`` experiment). Never chosen from a weights file's name.
    """

    model: MaskRCNNConfig = MaskRCNNConfig()
    optimizer: str = "sgd"
    lr: float = 1e-2
    lr_batch: int = 1
    lr_schedule: str = "piecewise"
    warmup_epochs: float = 0.3
    lr_boundaries: Tuple[float, ...] = (8.0, 10.0)
    lr_values: Tuple[float, ...] = (1e-3, 1e-4)
    backbone_checkpoint: Optional[str] = None
    preset: str = "nvidia"

    def __post_init__(self):
        super().__post_init__()
        check(self.preset in PRESETS, f"mask-rcnn --preset must be one of {PRESETS}. Received: {self.preset!r}")
        check(self.optimizer in ("sgd", "adam"), f"mask-rcnn --optimizer must be sgd or adam. Received: {self.optimizer!r}")


@dataclasses.dataclass(frozen=True)
class SegmentationExperiment(Experiment):
    """NVIDIA's TF2 recipe: 12 epochs, 4 images per GPU, eval batch 8, weight decay 1e-4, eval at the end."""

    model: str = "mask-rcnn"
    workspace: str = "./results"
    trainer: TrainerConfig = TrainerConfig(epochs=12, batch_size=4, eval_batch_size=8, eval_every=None,
                                           best_metric=BEST_METRIC, weight_decay=1e-4, log_every=100,
                                           log_warmup_steps=100)
    data: DetectionData = DetectionData()
    task: SegmentationTaskConfig = SegmentationTaskConfig()


@dataclasses.dataclass(frozen=True)
class DetectorInferOptions(InferOptions):
    """``infer``: detections drawn from ``score_threshold`` up; a box overlapping a higher-scoring drawn one of
    any class by IoU > ``draw_overlap`` is not drawn (``detections.json`` keeps all)."""

    score_threshold: float = DRAW_SCORE
    draw_overlap: float = DRAW_OVERLAP


@dataclasses.dataclass(frozen=True)
class DetectorExportOptions(ExportOptions):
    """``export --format onnx``: ``pasted`` masks or ``raw`` logits; a fixed ``(H, W)`` input (None: dynamic)."""

    onnx_masks: str = "pasted"
    onnx_input_size: Optional[Tuple[int, int]] = None


# ----------------------------------------------------------------------- flags
_MODEL_MODES = ("train", "eval", "infer", "export", "info")
FLAGS = (
    flag("--eval-file", "--eval_file", dest="data.eval_file", modes=("train", "eval"), group="data",
         help="validation annotation JSON (COCO ground truth)"),
    flag("--eval-images", "--eval_images", dest="data.eval_images", modes=("train", "eval"), group="data",
         help="validation image folder (COCO JSON input)"),
    flag("--train-annotations", "--train_annotations", dest="data.train_annotations", modes=("train",),
         group="data", help="training annotation JSON (custom data)"),
    flag("--train-images", "--train_images", dest="data.train_images", modes=("train",), group="data",
         help="training image folder (custom data)"),
    flag("--augmentation", dest="data.augment", choices=("flip", "none", "ssj", "lsj", "multiscale"), modes=("train",),
         group="data", help="training augmentation: flip (NVIDIA's), none, ssj (scale jitter 0.8-1.25), lsj "
                            "(large-scale jitter 0.1-2.0, torchvision's), multiscale (short side x 0.8-1.0)"),
    flag("--scale-range", dest="data.scale_range", type=float, nargs=2, metavar=("MIN", "MAX"), modes=("train",),
         group="data", help="resize factors of scale jitter (with --augmentation ssj/lsj, or alone: jitter on)"),
    flag("--color-jitter", dest="data.color_jitter", modes=("train",), group="data", action="store_const", const=True,
         help="random brightness, contrast and saturation in training"),
    flag("--val-split", dest="data.val_split", type=float, modes=("train",), group="data", metavar="F",
         help="no validation annotations? hold out this share of the training images (by image, --seed), kept in "
              "<workspace>/val_split/ so eval and --resume use the same split"),
    flag("--finetune-bn", "--finetune_bn", dest="task.model.backbone.finetune_bn", modes=("train", "info"),
         group="model", help="train BatchNorm (default: frozen)", action="store_const", const=True),
    flag("--no-custom-ops", "--no_custom_ops", dest="task.model.custom_ops", modes=_MODEL_MODES, group="model",
         help="plain-TF ops instead of the fused custom_ops kernels (also: MRCNN_NO_CUSTOM_OPS=1)",
         action="store_const", const=False),
    flag("--backbone-checkpoint", "--backbone_checkpoint", dest="task.backbone_checkpoint", modes=("train",),
         group="model", help="ImageNet ResNet-50 weights: Keras .h5 (keras.applications names) or TF checkpoint"),
    flag("--preset", dest="task.preset", choices=PRESETS, modes=_MODEL_MODES + ("benchmark",), group="model",
         help="nvidia (NVIDIA's recipe) or torchvision (maskrcnn_resnet50_fpn's layout, filters and input "
              "transform: what --model mask-rcnn-torchvision is)"),
    flag("--score-threshold", "--score_threshold", dest="opt.score_threshold", type=UNIT_FLOAT,
         modes=("infer",), group="inference", help="detections drawn in the PNGs"),
    flag("--draw-overlap", "--draw_overlap", dest="opt.draw_overlap", type=UNIT_FLOAT,
         modes=("infer",), group="inference",
         help="a box overlapping a higher-scoring drawn box of any class by more IoU is not drawn (the "
              "model's NMS is per class, so one object can come out under two names); 1 draws all. "
              "detections.json keeps every detection"),
    flag("--onnx-masks", dest="opt.onnx_masks", choices=("pasted", "raw"), modes=("export",),
         group="export", help="--format onnx: pasted = [B, D, H, W] uint8 masks as the SavedModel; raw = 28x28 "
                              "logits per detection + the boxes to paste them into (for runtimes that paste)"),
    flag("--onnx-input-size", dest="opt.onnx_input_size", type=POSITIVE_INT, nargs=2, metavar=("H", "W"),
         modes=("export",), group="export", help="--format onnx: fixed input height and width (TensorRT engines; "
                                                 "unset: dynamic)"),
)



def _with_preset(experiment: SegmentationExperiment, preset: str) -> SegmentationExperiment:
    """``experiment`` with the model fields and ``task.preset`` of ``preset`` (:data:`mrcnn_tf2.config.PRESETS`)."""
    fields = {f"task.model.{k}": v for k, v in preset_model_fields(preset).items()}
    return experiment.override({"task.preset": preset, **fields})


@register_experiment("mask-rcnn", FAMILY)
def mask_rcnn():
    return SegmentationExperiment()


@register_experiment("mask-rcnn-r50-fpn", FAMILY)
def mask_rcnn_r50_fpn():
    """NVIDIA's name of the same recipe."""
    return SegmentationExperiment(model="mask-rcnn-r50-fpn")


@register_experiment("mask-rcnn-torchvision", FAMILY)
def mask_rcnn_torchvision():
    return _with_preset(SegmentationExperiment(model="mask-rcnn-torchvision"), "torchvision")


#: ``mask-rcnn-finetune``'s schedule: torchvision's detection fine-tuning tutorial (SGD 0.005 at batch 2, i.e. 0.0025
#: per image, momentum 0.9, a warm-up epoch) over detectron2's short small-set schedule (12 passes, 10x drops late).
FINETUNE = {"task.optimizer": "sgd", "task.lr": 2.5e-3, "task.lr_batch": 1, "task.warmup_epochs": 1.0,
            "task.lr_boundaries": (8.0, 11.0), "task.lr_values": (2.5e-4, 2.5e-5), "task.needs_weights": True,
            "trainer.epochs": 12, "trainer.eval_every": 4, "data.augment": "lsj"}


@register_experiment("mask-rcnn-finetune", FAMILY)
def mask_rcnn_finetune():
    """torchvision's COCO Mask R-CNN fine-tuned on your classes (needs ``--pretrained``): :data:`FINETUNE`."""
    return _with_preset(SegmentationExperiment(model="mask-rcnn-finetune"), "torchvision").override(FINETUNE)


@register_experiment("mask-rcnn-efficientnet-b0-fpn", FAMILY)
def mask_rcnn_efficientnet_b0_fpn():
    base = SegmentationExperiment(model="mask-rcnn-efficientnet-b0-fpn")
    return base.override({"task.model.backbone": efficientnet("b0")})
