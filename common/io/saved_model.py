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

import logging
import os
import shutil
import tempfile
from typing import Callable, Dict, Optional

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


def save(module: tf.Module, export_dir: str, signatures: Dict[str, tf.types.experimental.ConcreteFunction],
         overwrite: bool = False, extra: Optional[Callable[[str], None]] = None) -> str:
    """``tf.saved_model.save`` with :data:`SAVE_OPTIONS` into a temporary folder next to ``export_dir``, then
    renamed into place: a failed export leaves no half-written folder and keeps the previous one.

    Args:
      extra: writes more files into the folder (its path) before it is moved into place.
      overwrite: replace an existing, non-empty ``export_dir`` (else ``FileExistsError``).

    Returns:
      The absolute export folder.
    """
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and (os.path.isfile(export_dir) or os.listdir(export_dir)) and not overwrite:
        raise FileExistsError(f"Export directory {export_dir} exists; pass --overwrite to replace it")
    os.makedirs(os.path.dirname(export_dir), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(export_dir))
    try:
        tf.saved_model.save(module, tmp, signatures=signatures, options=SAVE_OPTIONS)
        if extra is not None:
            extra(tmp)
        _move_into_place(tmp, export_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return export_dir


class _UnsavedGradientNotice(logging.Filter):
    """Drops TensorFlow's "Importing a function ... with ops with unsaved custom gradients" warning: exports are
    saved without gradient functions on purpose (:data:`SAVE_OPTIONS`), and a served model is never
    differentiated, so the warning says nothing a user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "with ops with unsaved custom gradients" not in record.getMessage()


def load(export_dir: str):
    """``tf.saved_model.load`` of one of our exports, without the unsaved-custom-gradient warnings."""
    notice = _UnsavedGradientNotice()
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(notice)
    try:
        return tf.saved_model.load(export_dir)
    finally:
        absl_logger.removeFilter(notice)


def _move_into_place(tmp: str, export_dir: str) -> None:
    """Renames ``tmp`` to ``export_dir``, an existing export moved aside first and deleted after."""
    if not os.path.exists(export_dir):
        os.rename(tmp, export_dir)
        return
    old = tempfile.mkdtemp(prefix=".old-export-", dir=os.path.dirname(export_dir))
    os.rename(export_dir, os.path.join(old, "model"))
    os.rename(tmp, export_dir)
    shutil.rmtree(old, ignore_errors=True)
