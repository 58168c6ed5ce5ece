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


def write_reports(folder: str, confusion: np.ndarray, names: Sequence[str]) -> List[str]:
    """``per_class.csv`` and ``confusion.csv`` (rows: true class, columns: predicted) in ``folder``; returns
    their paths. Written to a temporary name first, so a reader never sees half a file."""
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
    return paths
