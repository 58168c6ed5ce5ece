"""Seed 003's training recipe per variant (NVIDIA EfficientNet for PyTorch), as config overrides.

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

from typing import Any, Dict

LR_SCHEDULES = ("cosine", "linear")

#: Float B4 against the float B0 row (the defaults of ``ClassificationExperiment``).
B4 = {"task.lr": 0.16, "trainer.weight_decay": 5e-6, "trainer.batch_size": 128}
#: QAT fine-tuning of B0 from FP32 weights.
QAT_B0 = {"task.optimizer": "sgd", "task.lr": 0.0125, "task.lr_batch": 128, "task.lr_schedule": "cosine",
          "task.momentum": 0.89, "trainer.weight_decay": 4.5e-5, "task.warmup_epochs": 0, "trainer.epochs": 10,
          "task.mixup": 0.0, "trainer.batch_size": 128}
#: QAT fine-tuning of B4 from FP32 weights.
QAT_B4 = {"task.optimizer": "rmsprop", "task.lr": 4.09e-6, "task.lr_batch": 32, "task.lr_schedule": "linear",
          "task.momentum": 0.9, "task.rmsprop_alpha": 0.853, "task.rmsprop_eps": 0.00422,
          "trainer.weight_decay": 9.714e-4, "task.warmup_epochs": 0, "trainer.epochs": 2, "task.mixup": 0.0,
          "trainer.batch_size": 32}


def recipe_for(model_name: str) -> Dict[str, Any]:
    """Dotted overrides of the float-B0 defaults: QAT rows for QAT variants, the B4 row for B4 sizes."""
    if "-quant-" in model_name:
        return dict(QAT_B4 if model_name.endswith("b4") else QAT_B0)
    return dict(B4) if model_name.endswith("b4") else {}
