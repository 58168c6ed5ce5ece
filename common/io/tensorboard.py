"""TensorBoard summaries of a run (``<workspace>/tensorboard`` unless ``--no-tensorboard``): scalars, the run's
pictures as image summaries and precision-recall curves through TensorBoard's PR-curve plugin.

Steps are the optimizer's iteration count when the trainer provides it (``Logger.global_step``), so scalars
logged every ``--log-every`` steps and per epoch share one axis; commands without a trainer count log calls.
"""
from __future__ import annotations

import os
from typing import Dict, Sequence, Tuple

import numpy as np


def picture_tag(path: str, root: str) -> str:
    """``<root>/eval/confusion.png`` -> ``eval/confusion``; ``<root>/eval/worst/03_cat_1.png`` -> ``eval/worst/03``."""
    folder, name = os.path.split(os.path.relpath(path, root))
    stem = os.path.splitext(name)[0]
    stem = stem.split("_", 1)[0] if os.path.basename(folder) == "worst" else stem
    return "/".join([*filter(None, folder.split(os.sep)), stem])


class SummaryWriter:
    """A ``tf.summary`` file writer for one folder (created on first use)."""

    def __init__(self, folder: str):
        import tensorflow as tf

        self.folder = folder
        self._writer = tf.summary.create_file_writer(folder)

    def scalars(self, step: int, values: Dict[str, float]) -> None:
        """One scalar summary per ``values`` entry."""
        import tensorflow as tf

        with self._writer.as_default(step=step):
            for key, value in values.items():
                tf.summary.scalar(key, value)

    def pictures(self, step: int, paths: Sequence[str], root: str) -> None:
        """Each PNG of ``paths`` as an image summary tagged by its path under ``root`` (``eval/confusion``;
        gallery tiles by rank only, ``eval/worst/01``, so each rank is one series across validations)."""
        import tensorflow as tf

        with self._writer.as_default(step=step):
            for path in paths:
                if path.endswith(".png") and os.path.isfile(path):
                    image = tf.io.decode_png(tf.io.read_file(path), channels=3)
                    tf.summary.image(picture_tag(path, root), image[None], step=step)

    def pr_curves(self, step: int, curves: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> None:
        """``{tag: (precision [R], recall [R])}`` as PR-curve summaries (R >= 2 points; the plugin's counts are
        written as 0: COCOeval keeps precision per recall point, not the counts behind it)."""
        import tensorflow as tf
        from tensorboard.plugins.pr_curve import metadata

        with self._writer.as_default(step=step):
            for tag, (precision, recall) in curves.items():
                points = len(recall)
                zeros = np.zeros(points, np.float32)
                data = np.stack([zeros, zeros, zeros, zeros, np.asarray(precision, np.float32),
                                 np.asarray(recall, np.float32)])
                meta = metadata.create_summary_metadata(display_name=tag, description="", num_thresholds=points)
                tf.summary.write(f"{tag}/pr_curves", tf.constant(data), metadata=meta.SerializeToString())

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        """Flushes and releases the event file (a process that runs many commands, tests, keeps no writer)."""
        self._writer.close()
