"""Seed 003's training recipe defaults per variant (NVIDIA EfficientNet for PyTorch).

RMSprop (momentum 0.9), LR 0.08 (B0) / 0.16 (B4) per 4096 images scaled
linearly with the global batch, cosine schedule with 16 warm-up epochs,
weight decay 1e-5 (B0) / 5e-6 (B4) not on BN/bias, label smoothing 0.1,
MixUp 0.2, AutoAugment, 400 epochs.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimisation defaults; ``lr`` is for ``lr_batch`` images."""

    optimizer: str = "rmsprop"
    lr: float = 0.08
    lr_batch: int = 4096
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


def recipe_for(model_name: str) -> Recipe:
    """B4-sized models use the B4 row (LR 0.16, WD 5e-6), everything else B0's."""
    if model_name.endswith("b4"):
        return Recipe(lr=0.16, weight_decay=5e-6, batch_size=128)
    return Recipe()
