"""Per-class classification metrics from the confusion matrix (efficientnet_tf2.evaluation)."""
import csv
import math

import numpy as np
import pytest

from efficientnet_tf2.evaluation import draw_confusion, per_class_rows, top_confusions, write_reports

CONFUSION = np.array([[8, 2, 0], [1, 5, 4], [0, 0, 0]])
NAMES = ["cat", "dog", "owl"]


def test_rows_are_recall_and_precision_per_class():
    rows = per_class_rows(CONFUSION, NAMES)
    assert rows[0] == ("cat", 10, 8, 80.0, round(100 * 8 / 9, 2))
    assert rows[1] == ("dog", 10, 5, 50.0, round(100 * 5 / 7, 2))
    assert rows[2][:3] == ("owl", 0, 0) and math.isnan(rows[2][3])  # no images: undefined, not 0


def test_top_confusions_are_the_largest_off_diagonal_cells():
    assert top_confusions(CONFUSION, NAMES, k=2) == ["dog -> owl: 4 of 10 (40.0 %)", "cat -> dog: 2 of 10 (20.0 %)"]
    assert top_confusions(np.eye(3), NAMES) == []


def test_csv_files_sum_to_the_validation_count(tmp_path):
    per_class, confusion, picture = write_reports(str(tmp_path), CONFUSION, NAMES)
    with open(per_class) as handle:
        rows = list(csv.DictReader(handle))
    assert sum(int(r["images"]) for r in rows) == CONFUSION.sum() == 20
    with open(confusion) as handle:
        table = list(csv.reader(handle))
    assert table[0][1:] == NAMES and sum(int(v) for row in table[1:] for v in row[1:]) == 20


@pytest.mark.parametrize("classes", [3, 200])
def test_confusion_png_opens_at_any_class_count(tmp_path, classes):
    """Up to 30 classes the matrix; 200 (or ImageNet's 1000): the most confused pairs, still readable."""
    from PIL import Image

    rng = np.random.default_rng(0)
    confusion = rng.integers(0, 5, (classes, classes)) + np.diag(np.full(classes, 20))
    path = draw_confusion(str(tmp_path), confusion, [f"class{i}" for i in range(classes)])
    with Image.open(path) as image:
        assert image.format == "PNG" and max(image.size) < 4000
