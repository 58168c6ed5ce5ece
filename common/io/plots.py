"""The evaluation pictures (matplotlib, headless ``Agg`` backend; each written atomically, as a PNG).

Generic drawings the tasks fill: a class-by-class matrix (confusion), horizontal bars (per-class AP, top
confusions), precision-recall curves. Shapes: C classes, R recall points.
"""
from __future__ import annotations

import os
from typing import Dict, Sequence

import numpy as np

MAX_MATRIX_CLASSES = 30  # beyond this a confusion matrix is unreadable: draw the top confused pairs instead


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def save(figure, path: str) -> str:
    """Writes ``figure`` to ``path`` (PNG) atomically and closes it; returns ``path``."""
    plt = pyplot()
    figure.tight_layout()
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=90)
    plt.close(figure)
    os.replace(tmp, path)
    return path


def matrix(values: np.ndarray, names: Sequence[str], path: str, title: str) -> str:
    """``values [C, C]`` (rows: true, columns: predicted; row-normalised here) as a heat map with labels."""
    plt = pyplot()
    rows = np.asarray(values, np.float64)
    rows = rows / np.maximum(rows.sum(1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axis.set_yticks(range(len(names)), names, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axis, fraction=0.046)
    return save(figure, path)


def bars(values: Dict[str, Sequence[float]], labels: Sequence[str], path: str, title: str, xlabel: str) -> str:
    """One horizontal bar group per label; ``values``: series name -> one value per label (NaN drawn empty)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, max(2.5, 0.32 * len(labels) * max(len(values), 1) + 1)))
    positions = np.arange(len(labels))
    height = 0.8 / max(len(values), 1)
    for i, (series, numbers) in enumerate(values.items()):
        axis.barh(positions + i * height, np.nan_to_num(np.asarray(numbers, np.float64)), height, label=series)
    axis.set_yticks(positions + height * (len(values) - 1) / 2, labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel(xlabel)
    axis.set_title(title, fontsize=10)
    axis.grid(axis="x", alpha=0.3)
    if len(values) > 1:
        axis.legend(fontsize=8)
    return save(figure, path)


def pr_curves(recall_points: np.ndarray, panels: Dict[str, Dict[str, np.ndarray]], path: str) -> str:
    """One panel per title: ``{curve name: precision [R]}`` against ``recall_points [R]``."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for axis, (title, curves) in zip(axes[0], panels.items()):
        for name, precision in curves.items():
            axis.plot(recall_points, np.clip(precision, 0, 1), label=name)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("recall")
        axis.set_ylabel("precision")
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return save(figure, path)
