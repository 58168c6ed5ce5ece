"""Per-class classification metrics from the validation confusion matrix: CSV tables and the top confusions.

Shapes: C classes; ``confusion[t, p]`` counts validation images of true class ``t`` predicted as ``p``
(top-1), summed over the whole split by the validation loop.
"""
from __future__ import annotations

import csv
import os
from typing import List, Sequence, Tuple

import numpy as np

TOP_CONFUSIONS = 5


def per_class_rows(confusion: np.ndarray, names: Sequence[str]) -> List[Tuple]:
    """``(class, images, correct, recall %, precision %)`` per class; recall is the class's own accuracy."""
    confusion = np.asarray(confusion, np.float64)
    images, predicted, correct = confusion.sum(1), confusion.sum(0), np.diag(confusion)
    rows = []
    for index, name in enumerate(names):
        recall = 100.0 * correct[index] / images[index] if images[index] else float("nan")
        precision = 100.0 * correct[index] / predicted[index] if predicted[index] else float("nan")
        rows.append((name, int(images[index]), int(correct[index]), round(recall, 2), round(precision, 2)))
    return rows


def top_confusions(confusion: np.ndarray, names: Sequence[str], k: int = TOP_CONFUSIONS) -> List[str]:
    """The ``k`` largest off-diagonal cells: ``"true -> predicted: n of m (x %)"``."""
    confusion = np.asarray(confusion, np.float64)
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None)[:k]
    lines = []
    for flat in order:
        true, pred = np.unravel_index(flat, off.shape)
        if off[true, pred] <= 0:
            break
        total = confusion[true].sum()
        lines.append(f"{names[true]} -> {names[pred]}: {int(off[true, pred])} of {int(total)} "
                     f"({100.0 * off[true, pred] / total:.1f} %)")
    return lines


def draw_confusion(folder: str, confusion: np.ndarray, names: Sequence[str]) -> str:
    """``confusion.png``: the row-normalised matrix up to 30 classes; beyond, the 20 most confused pairs as bars
    (readable at 1000 classes)."""
    from common.io import plots

    path = os.path.join(folder, "confusion.png")
    if len(names) <= plots.MAX_MATRIX_CLASSES:
        return plots.matrix(confusion, names, path, "confusion (rows: true class, normalised)")
    pairs = top_confusions(confusion, names, k=20)
    labels = [line.split(":")[0] for line in pairs] or ["none"]
    shares = [float(line.rsplit("(", 1)[1].split()[0]) for line in pairs] or [0.0]
    return plots.bars({"% of the true class": shares}, labels, path, "most confused pairs (true -> predicted)",
                      "% of the true class's images")


def write_reports(folder: str, confusion: np.ndarray, names: Sequence[str]) -> List[str]:
    """``per_class.csv``, ``confusion.csv`` (rows: true class, columns: predicted) and ``confusion.png`` in
    ``folder``; returns their paths. Written to a temporary name first, so a reader never sees half a file."""
    os.makedirs(folder, exist_ok=True)
    names = list(names) or [str(i) for i in range(len(confusion))]
    tables = {"per_class.csv": [("class", "images", "correct", "recall_percent", "precision_percent"),
                                *per_class_rows(confusion, names)],
              "confusion.csv": [("true \\ predicted", *names),
                                *[(name, *map(int, row)) for name, row in zip(names, np.asarray(confusion))]]}
    paths = []
    for filename, rows in tables.items():
        path = os.path.join(folder, filename)
        with open(path + ".tmp", "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths + [draw_confusion(folder, confusion, names)]


def write_worst(folder: str, paths: Sequence[str], labels: Sequence[int], examples, names: Sequence[str],
                count: int = 0) -> List[str]:
    """``<folder>/worst/``: the validation images with the lowest probability of their true class, each
    captioned with the true and predicted class and their probabilities, and ``worst.csv``.

    Args:
      paths, labels: the validation files and true classes in validation order (``[N]``).
      examples: ``{"example.true_prob", "example.predicted", "example.predicted_prob": [N]}`` numpy arrays.
      names: class names.
      count: tiles to draw (0: :data:`common.io.gallery.WORST_COUNT`).

    Returns:
      The paths written (tiles, then the table).
    """
    from PIL import Image

    from common.io import gallery

    out = gallery.prepare(folder)
    true_prob, predicted = examples["example.true_prob"], examples["example.predicted"].astype(int)
    predicted_prob = examples["example.predicted_prob"]
    written, rows = [], []
    for rank, index in enumerate(gallery.lowest(true_prob, count or gallery.WORST_COUNT), 1):
        label, guess = int(labels[index]), int(predicted[index])
        with Image.open(paths[index]) as image:
            picture = gallery.thumbnail(image)
        lines = [f"#{rank} {os.path.basename(paths[index])}", f"true: {names[label]} ({true_prob[index]:.2f})",
                 f"predicted: {names[guess]} ({predicted_prob[index]:.2f})"]
        name = f"{os.path.basename(os.path.dirname(paths[index]))}_{os.path.basename(paths[index])}"
        written.append(gallery.save(gallery.caption(picture, lines), out, rank, name))
        rows.append((rank, paths[index], names[label], round(float(true_prob[index]), 4), names[guess],
                     round(float(predicted_prob[index]), 4)))
    header = ("rank", "file", "true_class", "true_class_probability", "predicted_class", "predicted_probability")
    return written + [gallery.write_table(out, header, rows)]
