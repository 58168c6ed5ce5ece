"""Seed 003's training recipe defaults per variant (NVIDIA EfficientNet for PyTorch).

Float models: RMSprop (momentum 0.9), LR 0.08 (B0) / 0.16 (B4) per 4096
images scaled linearly with the global batch, cosine schedule with 16
warm-up epochs, weight decay 1e-5 (B0) / 5e-6 (B4) not on BN/bias, label
smoothing 0.1, MixUp 0.2, AutoAugment, 400 epochs.

QAT fine-tuning (``efficientnet-quant-*``, from FP32 weights): B0 — SGD
momentum 0.89, LR 0.0125 per 128 images, cosine, WD 4.5e-5, 10 epochs;
B4 — RMSprop alpha 0.853, epsilon 0.00422, momentum 0.9, LR 4.09e-6 per 32
images, linear decay, WD 9.714e-4, 2 epochs. No warm-up and no MixUp (the
README gives none for QAT); label smoothing and AutoAugment as for training.
"""
from __future__ import annotations

import dataclasses

LR_SCHEDULES = ("cosine", "linear")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimisation defaults; ``lr`` is for ``lr_batch`` images."""

    optimizer: str = "rmsprop"
    lr: float = 0.08
    lr_batch: int = 4096
    lr_schedule: str = "cosine"
    momentum: float = 0.9
    rmsprop_alpha: float = 0.9
    rmsprop_eps: float = 1e-3
    weight_decay: float = 1e-5
    warmup_epochs: int = 16
    epochs: int = 400
    label_smoothing: float = 0.1
    mixup: float = 0.2
    batch_size: int = 256
    augment: str = "autoaugment"


QAT_B0 = Recipe(optimizer="sgd", lr=0.0125, lr_batch=128, lr_schedule="cosine", momentum=0.89,
                weight_decay=4.5e-5, warmup_epochs=0, epochs=10, mixup=0.0, batch_size=128)
QAT_B4 = Recipe(optimizer="rmsprop", lr=4.09e-6, lr_batch=32, lr_schedule="linear", momentum=0.9,
                rmsprop_alpha=0.853, rmsprop_eps=0.00422, weight_decay=9.714e-4, warmup_epochs=0,
                epochs=2, mixup=0.0, batch_size=32)


def recipe_for(model_name: str) -> Recipe:
    """QAT variants use the QAT rows; B4-sized models the B4 row (LR 0.16, WD 5e-6), the rest B0's."""
    if "-quant-" in model_name:
        return QAT_B4 if model_name.endswith("b4") else QAT_B0
    if model_name.endswith("b4"):
        return Recipe(lr=0.16, weight_decay=5e-6, batch_size=128)
    return Recipe()
