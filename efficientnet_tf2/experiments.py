"""Image-classification experiments: the configs and every registered classifier name (TensorFlow-free).

A name is a whole experiment (TF Model Garden's ``exp_factory``): each registered function returns a
complete :class:`ClassificationExperiment` (backbone, classifier head, data, optimisation, trainer).
The classification task takes any backbone of :mod:`backbones.configs`; a new model is one function
here (or in a plug-in) decorated with :func:`common.command.registry.register_experiment`.

Recipes (seed 003, NVIDIA EfficientNet for PyTorch, and its sibling ResNet-50 v1.5 recipe):

* ``efficientnet-b0`` / ``-b4`` (and ``-widese-``): RMSprop (momentum 0.9, alpha 0.9, eps 1e-3),
  LR 0.08 (B0) / 0.16 (B4) per 4096 images scaled linearly with the global batch, cosine after 16
  warm-up epochs, weight decay 1e-5 / 5e-6 (not on BN/bias), label smoothing 0.1, MixUp 0.2,
  AutoAugment, 400 epochs, 256 / 128 images per GPU.
* ``efficientnet-b1`` ... ``-b7`` (NVIDIA publishes no recipe): B0->B4 doubles the LR and halves the
  weight decay and the per-GPU batch over four compound-scaling steps, so each step multiplies them by
  ``2**(1/4)``, ``2**(-1/4)``, ``2**(-1/4)`` (batch rounded to a multiple of 8):
  :func:`efficientnet_recipe`. B0 and B4 come out exactly as NVIDIA's.
* ``efficientnet-quant-b0`` / ``-b4``: QAT fine-tuning from FP32 weights: B0 SGD momentum 0.89, LR
  0.0125 per 128, cosine, WD 4.5e-5, 10 epochs; B4 RMSprop alpha 0.853, eps 0.00422, momentum 0.9, LR
  4.09e-6 per 32, linear decay, WD 9.714e-4, 2 epochs; no warm-up, no MixUp.
* ``resnet50``: NVIDIA's ResNet-50 v1.5 (ConvNets, PyTorch): SGD momentum 0.875, LR 0.256 per 256,
  cosine after 8 warm-up epochs, WD 1/32768, label smoothing 0.1, no MixUp, crop + flip, 90 epochs,
  256 images per GPU.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

from backbones.configs import BackboneConfig, EfficientNetConfig, ResNetConfig, efficientnet, efficientnet_dropout, \
    EFFICIENTNET_SCALING
from common.command.cli import NON_NEGATIVE_FLOAT, POSITIVE_FLOAT, POSITIVE_INT, UNIT_FLOAT, flag
from common.command.config import DataConfig, Experiment, TaskConfig, TrainerConfig, check
from common.command.options import ExportOptions, InferOptions
from common.command.registry import register_experiment

FAMILY = "classification"
BACKENDS = ("tfdata", "dali-cpu", "dali-gpu", "synthetic")
AUGMENTATIONS = ("autoaugment", "none")
DEFAULT_NUM_CLASSES = 1000  # ImageNet
TOP_K = 5  # classes infer prints per image (--top-k)
KERAS_REFERENCE = "keras-efficientnetb0"


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """A classifier: any backbone, global average pooling, dropout, one Dense layer.

    Attributes:
      backbone: the backbone (tagged union; ``kind`` names it).
      num_classes: classifier width.
      dropout_rate: dropout before the classifier.
      quantized: quantization-aware training (TF-MOT fake-quant, int8 Q/DQ in exports).
    """

    backbone: BackboneConfig = EfficientNetConfig()
    num_classes: int = DEFAULT_NUM_CLASSES
    dropout_rate: float = 0.2
    quantized: bool = False

    def __post_init__(self):
        check(self.num_classes >= 1, f"num_classes must be >= 1. Received: num_classes={self.num_classes}")
        check(0 <= self.dropout_rate < 1, f"dropout_rate must be in [0, 1). Received: {self.dropout_rate}")

    @property
    def resolution(self) -> int:
        """The backbone's default square input size (224 for backbones without one)."""
        return getattr(self.backbone, "resolution", 224)

    def replace(self, **overrides) -> "ClassifierConfig":
        """Copy with fields replaced: this config's own by name, any other the backbone's (None ignored)."""
        own = {f.name for f in dataclasses.fields(self)}
        mine = {k: v for k, v in overrides.items() if k in own and v is not None}
        theirs = {k: v for k, v in overrides.items() if k not in own}
        return dataclasses.replace(self, **mine, backbone=self.backbone.replace(**theirs)) if theirs else \
            dataclasses.replace(self, **mine)


@dataclasses.dataclass(frozen=True)
class ClassificationData(DataConfig):
    """ImageFolder data of a classification run (the shared fields are :class:`common.command.config.DataConfig`'s).

    Attributes:
      data_dir: root with ``train/`` and ``val/`` class folders (unused for synthetic data).
      backend: ``tfdata`` | ``dali-cpu`` | ``dali-gpu`` | ``synthetic``.
      image_size: square training/eval resolution (None: the backbone's).
      num_classes: classifier width (None: the number of class folders, else 1000).
      augment: ``autoaugment`` | ``none`` on top of crop + flip.
    """

    image_size: Optional[int] = None
    augment: str = "autoaugment"

    def __post_init__(self):
        check(self.backend in BACKENDS, f"--data-backend must be one of {BACKENDS}. Received: {self.backend!r}")
        check(self.augment in AUGMENTATIONS, f"--augmentation must be one of {AUGMENTATIONS}. Received: {self.augment!r}")


@dataclasses.dataclass(frozen=True)
class ClassificationTaskConfig(TaskConfig):
    """Model and optimisation of a classification run (optimizer and learning rate: :class:`TaskConfig`).

    Attributes:
      model: the classifier (backbone + head).
      rmsprop_alpha, rmsprop_eps: RMSprop settings.
      label_smoothing, mixup: training targets (MixUp alpha; 0 disables).
      pretrained_from_file: initial weights (Keras, TF checkpoint or NGC PyTorch state_dict).
      calibration_steps, calibration_method: QAT activation ranges from FP32 weights.
    """

    model: ClassifierConfig = ClassifierConfig()
    optimizer: str = "rmsprop"
    lr: float = 0.08
    lr_batch: int = 4096
    warmup_epochs: float = 16.0
    rmsprop_alpha: float = 0.9
    rmsprop_eps: float = 1e-3
    label_smoothing: float = 0.1
    mixup: float = 0.2
    calibration_steps: int = 8
    calibration_method: str = "percentile"


@dataclasses.dataclass(frozen=True)
class ClassificationExperiment(Experiment):
    """Seed 003's float B0 recipe: 400 epochs of 256 images per GPU, weight decay 1e-5, eval every epoch."""

    model: str = "efficientnet-b0"
    trainer: TrainerConfig = TrainerConfig(epochs=400, batch_size=256, weight_decay=1e-5, best_metric="top1",
                                           eval_every=1)
    data: ClassificationData = ClassificationData()
    task: ClassificationTaskConfig = ClassificationTaskConfig()


@dataclasses.dataclass(frozen=True)
class ClassifierInferOptions(InferOptions):
    """``infer``: ``top_k`` classes printed per image; ``class_names``: a file of one name per line."""

    top_k: int = TOP_K
    class_names: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ClassifierExportOptions(ExportOptions):
    """``export``: ``class_names``, a file of one name per line (default: the training run's); ``--format tflite``:
    ``quantize`` (:data:`efficientnet_tf2.tflite_export.QUANTIZATIONS`), calibrated for ``int8`` on the first
    ``calibration_images`` training images (``calibration_data``, default the run's training split)."""

    class_names: Optional[str] = None
    quantize: str = "none"
    calibration_images: int = 200
    calibration_data: Optional[str] = None


def classification(name: str, model: ClassifierConfig, overrides: Dict[str, Any]) -> ClassificationExperiment:
    """The float-B0 experiment with ``model`` as classifier and dotted ``overrides`` (a recipe row)."""
    base = ClassificationExperiment()
    base = dataclasses.replace(base, model=name, task=dataclasses.replace(base.task, model=model))
    return base.override(overrides)


# ----------------------------------------------------------------------- flags
def _train(*names, dest, help, **kwargs):  # noqa: A002
    return flag(*names, dest=dest, help=help, modes=("train",), group="training", **kwargs)


_MODEL_MODES = ("train", "eval", "infer", "export", "info")
FLAGS = (
    flag("--padding", dest="task.model.backbone.padding", choices=("same", "symmetric"), modes=_MODEL_MODES, group="model",
         help="'symmetric' = k//2 on every side as NVIDIA's PyTorch model (for NGC weights)"),
    flag("--bn-momentum", dest="task.model.backbone.bn_momentum", type=UNIT_FLOAT, modes=("train", "info"), group="model",
         help="BatchNorm moving-average momentum, Keras convention (0.9 suits short runs on small data)"),
    flag("--augmentation", dest="data.augment", choices=AUGMENTATIONS, modes=("train",), group="data",
         help="training augmentation on top of crop + flip"),
    _train("--rmsprop-alpha", dest="task.rmsprop_alpha", type=UNIT_FLOAT, help="RMSprop decay"),
    _train("--rmsprop-eps", dest="task.rmsprop_eps", type=POSITIVE_FLOAT, help="RMSprop epsilon"),
    _train("--label-smoothing", dest="task.label_smoothing", type=UNIT_FLOAT, help="label smoothing"),
    _train("--mixup", dest="task.mixup", type=NON_NEGATIVE_FLOAT, help="MixUp alpha (0 disables)"),
    _train("--calibration-steps", dest="task.calibration_steps", type=POSITIVE_INT,
           help="efficientnet-quant-*: training batches that set the activation ranges before fine-tuning "
                "from --pretrained-from-file; 0 skips it"),
    _train("--calibration-method", dest="task.calibration_method", choices=("max", "mean", "percentile"),
           help="activation range from the calibration batches"),
    flag("--top-k", dest="opt.top_k", type=POSITIVE_INT, modes=("infer",), group="inference",
         help="classes printed per image"),
    flag("--class-names", dest="opt.class_names", modes=("infer", "export"), group="inference",
         help="file with one class name per line (default: the training run's class folders)"),
    flag("--quantize", dest="opt.quantize", choices=("none", "fp16", "dynamic", "int8"), modes=("export",),
         group="export", help="--format tflite: fp16 weights, dynamic-range int8 weights, or int8 weights and "
                              "activations (calibrated; a QAT model is always int8 with its trained ranges); --format onnx: "
                              "int8 (onnxruntime's static Q/DQ quantization, calibrated)"),
    flag("--calibration-images", dest="opt.calibration_images", type=POSITIVE_INT, modes=("export",),
         group="export", help="--quantize int8 (and QAT models to TFLite): images the activation ranges are calibrated on"),
    flag("--calibration-data", dest="opt.calibration_data", modes=("export",), group="export",
         help="--quantize int8: an image folder (ImageFolder root: its train/) (default: the run's training data)"),
)



# --------------------------------------------------------------------- recipes
def efficientnet_recipe(scale: str) -> Dict[str, Any]:
    """Seed 003's float recipe scaled to ``efficientnet-<scale>`` (see the module doc)."""
    steps = list(EFFICIENTNET_SCALING).index(scale)
    factor = 2.0 ** (steps / 4)
    return {"task.lr": round(0.08 * factor, 6), "trainer.weight_decay": float(f"{1e-5 / factor:.4g}"),
            "trainer.batch_size": max(8, int(round(256 / factor / 8)) * 8)}


#: QAT fine-tuning of B0 from FP32 weights.
QAT_B0 = {"task.optimizer": "sgd", "task.lr": 0.0125, "task.lr_batch": 128, "task.lr_schedule": "cosine",
          "task.momentum": 0.89, "trainer.weight_decay": 4.5e-5, "task.warmup_epochs": 0, "trainer.epochs": 10,
          "task.mixup": 0.0, "trainer.batch_size": 128}
#: QAT fine-tuning of B4 from FP32 weights.
QAT_B4 = {"task.optimizer": "rmsprop", "task.lr": 4.09e-6, "task.lr_batch": 32, "task.lr_schedule": "linear",
          "task.momentum": 0.9, "task.rmsprop_alpha": 0.853, "task.rmsprop_eps": 0.00422,
          "trainer.weight_decay": 9.714e-4, "task.warmup_epochs": 0, "trainer.epochs": 2, "task.mixup": 0.0,
          "trainer.batch_size": 32}
#: NVIDIA's ResNet-50 v1.5 90-epoch recipe.
RESNET50 = {"task.optimizer": "sgd", "task.lr": 0.256, "task.lr_batch": 256, "task.lr_schedule": "cosine",
            "task.warmup_epochs": 8, "task.momentum": 0.875, "trainer.weight_decay": 3.0517578125e-05,
            "task.label_smoothing": 0.1, "task.mixup": 0.0, "data.augment": "none", "trainer.epochs": 90,
            "trainer.batch_size": 256}


def efficientnet_classifier(scale: str, wide_se: bool = False, quantized: bool = False) -> ClassifierConfig:
    """EfficientNet-``scale`` with its table's dropout."""
    return ClassifierConfig(backbone=efficientnet(scale, wide_se=wide_se), dropout_rate=efficientnet_dropout(scale),
                            quantized=quantized)


def _register_efficientnet(scale: str) -> None:
    @register_experiment(f"efficientnet-{scale}", FAMILY)
    def experiment():
        return classification(f"efficientnet-{scale}", efficientnet_classifier(scale), efficientnet_recipe(scale))


for _scale in EFFICIENTNET_SCALING:  # B0-B7: rows of the compound-scaling table
    _register_efficientnet(_scale)


@register_experiment("efficientnet-widese-b0", FAMILY)
def efficientnet_widese_b0():
    return classification("efficientnet-widese-b0", efficientnet_classifier("b0", wide_se=True), {})


@register_experiment("efficientnet-widese-b4", FAMILY)
def efficientnet_widese_b4():
    return classification("efficientnet-widese-b4", efficientnet_classifier("b4", wide_se=True),
                          efficientnet_recipe("b4"))


@register_experiment("efficientnet-quant-b0", FAMILY)
def efficientnet_quant_b0():
    return classification("efficientnet-quant-b0", efficientnet_classifier("b0", quantized=True), QAT_B0)


@register_experiment("efficientnet-quant-b4", FAMILY)
def efficientnet_quant_b4():
    return classification("efficientnet-quant-b4", efficientnet_classifier("b4", quantized=True), QAT_B4)


@register_experiment("resnet50", FAMILY)
def resnet50():
    """ResNet-50 v1.5 (stride on the 3x3 conv), every layer and BatchNorm trained, no classifier dropout."""
    backbone = ResNetConfig(depth=50, stride_in_1x1=False, freeze_at=0, finetune_bn=True, bn_epsilon=1e-5)
    return classification("resnet50", ClassifierConfig(backbone=backbone, dropout_rate=0.0), RESNET50)


@register_experiment(KERAS_REFERENCE, FAMILY, reference=True)
def keras_efficientnetb0():
    """``tf_keras.applications.EfficientNetB0(weights=None)`` timed by ``main.py benchmark`` (a peer, not trained)."""
    return classification(KERAS_REFERENCE, efficientnet_classifier("b0"), {})


def classifier_config(name: str, **overrides) -> ClassifierConfig:
    """The classifier of registered model ``name``, fields replaced (head's or backbone's, by name)."""
    from common.command.registry import get_experiment

    return get_experiment(name, benchmark=True).task.model.replace(**overrides)


def classifier_names() -> Tuple[str, ...]:
    """Registered classification models (not the benchmark references)."""
    from common.command.registry import get_family, list_models

    return tuple(n for n in list_models() if get_family(n).name == FAMILY)
