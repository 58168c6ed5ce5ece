"""Learning-rate schedules (per optimizer step) shared by both models.

* :class:`WarmupCosine` — linear warm-up then cosine decay (EfficientNet).
* :class:`WarmupLinear` — linear warm-up then linear decay to 0 (EfficientNet
  QAT B4, NVIDIA's ``--lr-schedule linear``).
* :class:`WarmupPiecewise` — linear warm-up from an initial rate, then
  piecewise constant (Mask R-CNN).

:func:`learning_rate_schedule` builds the one a task config asks for (``--lr-schedule``).

All are ``keras.optimizers.schedules.LearningRateSchedule`` with a
symmetric ``get_config``, so they are saved with the optimizer and resumed
exactly (the step lives in the optimizer's ``iterations``).
"""
from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf
import tf_keras as keras


class _WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``peak*(step+1)/warmup`` while warming up, then ``_decay(progress in [0, 1])``."""

    def __init__(self, peak_lr: float, total_steps: int, warmup_steps: int = 0):
        super().__init__()
        if total_steps <= 0 or warmup_steps < 0:
            raise ValueError(f"Need total_steps > 0 and warmup_steps >= 0. Received: "
                             f"total_steps={total_steps}, warmup_steps={warmup_steps}")
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(min(warmup_steps, total_steps))

    def _decay(self, progress):
        raise NotImplementedError

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak_lr * (step + 1.0) / max(self.warmup_steps, 1)
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        return tf.where(step < self.warmup_steps, warm, self._decay(progress))

    def get_config(self):
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


class WarmupCosine(_WarmupDecay):
    """``lr(step)``: ``peak*(step+1)/warmup`` while warming up, then cosine to ``end_lr``.

    Args:
      peak_lr: rate reached at the end of warm-up.
      total_steps: steps of the whole run (warm-up included).
      warmup_steps: linear warm-up length (0 disables it).
      end_lr: final rate of the cosine.
    """

    def __init__(self, peak_lr: float, total_steps: int, warmup_steps: int = 0, end_lr: float = 0.0):
        super().__init__(peak_lr, total_steps, warmup_steps)
        self.end_lr = float(end_lr)

    def _decay(self, progress):
        return self.end_lr + 0.5 * (self.peak_lr - self.end_lr) * (1.0 + tf.cos(math.pi * progress))

    def get_config(self):
        return dict(super().get_config(), end_lr=self.end_lr)


class WarmupLinear(_WarmupDecay):
    """``lr(step)``: ``peak*(step+1)/warmup`` while warming up, then linear decay to 0 at ``total_steps``.

    Args:
      peak_lr: rate reached at the end of warm-up.
      total_steps: steps of the whole run (warm-up included).
      warmup_steps: linear warm-up length (0 disables it).
    """

    def _decay(self, progress):
        return self.peak_lr * (1.0 - progress)


class WarmupPiecewise(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``init_lr`` to ``values[0]``, then piecewise constant.

    Args:
      init_lr: rate at step 0.
      warmup_steps: steps to reach ``values[0]``.
      boundaries: increasing step numbers where the rate changes.
      values: ``len(boundaries) + 1`` rates.
    """

    def __init__(self, init_lr: float, warmup_steps: int, boundaries: Sequence[int], values: Sequence[float]):
        super().__init__()
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"values must have len(boundaries)+1 entries. Received: "
                             f"boundaries={list(boundaries)}, values={list(values)}")
        if list(boundaries) != sorted(boundaries):
            raise ValueError(f"boundaries must increase. Received: boundaries={list(boundaries)}")
        self.init_lr = float(init_lr)
        self.warmup_steps = int(warmup_steps)
        self.boundaries = [int(b) for b in boundaries]
        self.values = [float(v) for v in values]

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        frac = step / max(self.warmup_steps, 1)
        warm = self.init_lr + (self.values[0] - self.init_lr) * frac
        piecewise = tf.constant(self.values[0], tf.float32)
        for boundary, value in zip(self.boundaries, self.values[1:]):
            piecewise = tf.where(step >= boundary, tf.constant(value, tf.float32), piecewise)
        return tf.where(step < self.warmup_steps, warm, piecewise)

    def get_config(self):
        return {"init_lr": self.init_lr, "warmup_steps": self.warmup_steps,
                "boundaries": self.boundaries, "values": self.values}


def learning_rate_schedule(task, global_batch: int, steps_per_epoch: int, epochs: int):
    """The per-step schedule of a :class:`common.command.config.TaskConfig` (every family's one LR vocabulary).

    Rates are for ``task.lr_batch`` images and scale linearly to ``global_batch``; epochs become steps
    (rounded). ``cosine``/``linear``: :class:`WarmupCosine`/:class:`WarmupLinear` to 0 over ``epochs``;
    ``piecewise``: :class:`WarmupPiecewise` from ``warmup_init_lr`` to ``lr``, then ``lr_values`` from each
    of ``lr_boundaries``; ``step``: the same with each value a tenth of the one before.
    """
    def scaled(rate: float) -> float:
        return rate * global_batch / task.lr_batch

    warmup = int(round(task.warmup_epochs * steps_per_epoch))
    if task.lr_schedule == "cosine":
        return WarmupCosine(scaled(task.lr), epochs * steps_per_epoch, warmup)
    if task.lr_schedule == "linear":
        return WarmupLinear(scaled(task.lr), epochs * steps_per_epoch, warmup)
    values = task.lr_values if task.lr_schedule == "piecewise" else \
        [task.lr * 0.1 ** (i + 1) for i in range(len(task.lr_boundaries))]
    bounds = [int(round(b * steps_per_epoch)) for b in task.lr_boundaries]
    return WarmupPiecewise(scaled(task.warmup_init_lr), warmup, bounds, [scaled(v) for v in (task.lr, *values)])
