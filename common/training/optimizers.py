"""Optimizer factory and decoupled-from-BN weight decay for both models.

Weight decay follows NVIDIA's recipes: an L2 term ``wd/2 * sum(w**2)`` on
convolution and dense *kernels* only (PyTorch's ``weight_decay``, which adds
``wd * w`` to the gradient); BatchNorm gamma/beta and biases are not decayed.
"""
from __future__ import annotations

from typing import Iterable, List

import tensorflow as tf
import tf_keras as keras

_NO_DECAY_SUFFIXES = ("gamma", "beta", "bias", "moving_mean", "moving_variance")


def should_decay(variable) -> bool:
    """True for conv/dense kernels; False for BN gamma/beta, biases and statistics."""
    leaf = variable.name.split("/")[-1].split(":")[0]
    return leaf not in _NO_DECAY_SUFFIXES and not leaf.endswith("_bias")


def decayed_variables(variables: Iterable[tf.Variable]) -> List[tf.Variable]:
    """The subset of ``variables`` that weight decay applies to."""
    return [v for v in variables if should_decay(v)]


def l2_loss(variables: Iterable[tf.Variable], weight_decay: float) -> tf.Tensor:
    """``weight_decay * sum(||w||^2) / 2`` over decayed variables, as float32 scalar."""
    terms = [tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in decayed_variables(variables)]
    if not terms or not weight_decay:
        return tf.constant(0.0, tf.float32)
    return weight_decay * tf.add_n(terms)


def build_optimizer(name: str, learning_rate, momentum: float = 0.9, rho: float = 0.9,
                    epsilon: float = 1e-3, nesterov: bool = False):
    """Creates a tf-keras optimizer.

    Args:
      name: ``rmsprop`` | ``sgd`` | ``adam``.
      learning_rate: float or ``LearningRateSchedule``.
      momentum: momentum of RMSprop/SGD.
      rho: RMSprop decay (PyTorch's ``alpha``).
      epsilon: RMSprop/Adam epsilon.
    """
    name = name.lower()
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, rho=rho, momentum=momentum, epsilon=epsilon)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, epsilon=epsilon)
    raise ValueError(f"Unknown optimizer. Received: name={name!r}; expected rmsprop, sgd or adam")
