"""Writing serving SavedModels: graphs and weights only, no per-layer Keras functions.

A ``tf.Module`` that tracks a Keras model makes ``tf.saved_model.save`` serialise the model
as Keras does (every layer's ``call`` traced again, training and inference variants) and
trace the gradient of every custom-gradient op; a serving export needs neither. The export
modules keep the model in :class:`Untracked`, track only its weights, and :func:`save`
skips the gradient functions. Measured on the demo's EfficientNet-B0 (64 px, two
signatures): ``main.py export --verify`` 56 s -> 20-23 s, 23 -> 19 MiB, same outputs
(``benchmarks/RESULTS.md``).
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

# Serving graphs are never differentiated: leave custom gradients out of the file.
SAVE_OPTIONS = tf.saved_model.SaveOptions(experimental_custom_gradients=False)


class Untracked:
    """Holds an object (the Keras model, Python-side tables) that ``tf.Module`` must not track.

    Tracked, a Keras model is saved with its training ``call`` too (Mask R-CNN's needs GT
    inputs), and tracked ``tf.function`` attributes are traced again at save time.

    The module still needs the model's variables in the SavedModel: track ``list(model.weights)``
    next to it.
    """

    def __init__(self, value):
        self.value = value


def save(module: tf.Module, export_dir: str, signatures: Dict[str, tf.types.experimental.ConcreteFunction]) -> None:
    """``tf.saved_model.save`` with :data:`SAVE_OPTIONS`."""
    tf.saved_model.save(module, export_dir, signatures=signatures, options=SAVE_OPTIONS)
