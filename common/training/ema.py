"""Exponential moving average of model weights (``--use-ema``).

Shadow copies of every model variable (trainable weights and BatchNorm
statistics) are ``tf.Variable``s of this ``tf.Module``, so they are saved in
and restored from checkpoints with the rest of the training state.
"""
from __future__ import annotations

import contextlib

import tensorflow as tf


class ModelEMA(tf.Module):
    """``shadow = decay * shadow + (1 - decay) * weight`` after every step.

    Args:
      model: a built Keras model.
      decay: EMA decay (e.g. 0.9999).
    """

    def __init__(self, model, decay: float = 0.9999, name: str = "ema"):
        super().__init__(name=name)
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1). Received: decay={decay}")
        self.decay = decay
        self._model_variables = list(model.variables)
        with tf.init_scope():
            self.shadow = [tf.Variable(v, trainable=False, name=f"ema_{i}", dtype=v.dtype,
                                       synchronization=tf.VariableSynchronization.ON_READ,
                                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                           for i, v in enumerate(self._model_variables)]

    def update(self):
        """Moves every shadow variable toward the current weights (call inside the step)."""
        for shadow, var in zip(self.shadow, self._model_variables):
            shadow.assign(self.decay * shadow + (1.0 - self.decay) * tf.cast(var, shadow.dtype))

    @contextlib.contextmanager
    def swapped(self):
        """Context in which the model holds the EMA weights (for eval/export)."""
        backup = [v.numpy() for v in self._model_variables]
        for shadow, var in zip(self.shadow, self._model_variables):
            var.assign(shadow.read_value() if hasattr(shadow, "read_value") else shadow)
        try:
            yield
        finally:
            for value, var in zip(backup, self._model_variables):
                var.assign(value)
