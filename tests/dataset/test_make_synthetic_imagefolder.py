"""Tests for dataset.make_synthetic_imagefolder."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dataset import make_synthetic_imagefolder as msi

SMALL = dict(num_classes=4, train_per_class=3, val_per_class=2, image_size=32, png_every=2)


def test_counts_layout_and_formats(tmp_path):
    counts = msi.make_imagefolder(str(tmp_path), seed=0, **SMALL)
    assert counts == {"train": 12, "val": 8}
    classes = sorted(os.listdir(tmp_path / "train"))
    assert classes == msi.class_names(4) == sorted(os.listdir(tmp_path / "val"))
    assert classes[0] == "00_red_circle"
    files = sorted(os.listdir(tmp_path / "train" / classes[1]))
    assert files == ["00000.jpg", "00001.png", "00002.jpg"]
    image = Image.open(tmp_path / "train" / classes[1] / "00001.png")
    assert image.size == (32, 32) and image.mode == "RGB"


def test_same_seed_gives_identical_bytes(tmp_path, read_tree):
    msi.make_imagefolder(str(tmp_path / "a"), seed=7, **SMALL)
    msi.make_imagefolder(str(tmp_path / "b"), seed=7, **SMALL)
    msi.make_imagefolder(str(tmp_path / "c"), seed=8, **SMALL)
    a, b, c = (read_tree(tmp_path / d) for d in "abc")
    assert a == b and len(a) == 20
    assert a.keys() == c.keys() and a != c


def test_ten_default_classes_have_distinct_shapes_and_colours():
    specs = [msi.class_spec(i) for i in range(10)]
    assert len({s for s, _ in specs}) == 10 and len({c for _, c in specs}) == 10
    assert len({msi.class_spec(i) for i in range(100)}) == 100
    with pytest.raises(ValueError, match="class index=100"):
        msi.class_spec(100)


def test_shape_is_drawn_in_class_colour():
    image = msi.render_image(2, np.random.default_rng(0), 64)  # blue triangle
    blue = np.abs(image.astype(int) - msi.COLOURS["blue"]).sum(axis=-1) < 90
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert 0.02 < blue.mean() < 0.5


def test_cli_main_prints_summary(tmp_path, capsys):
    msi.main(["--out", str(tmp_path), "--num-classes", "2", "--train-per-class", "1",
              "--val-per-class", "1", "--image-size", "16"])
    out = capsys.readouterr().out
    assert f"Wrote 2 train and 2 val images (2 classes, 16x16) to {tmp_path}" in out


def test_cli_module_help_runs():
    result = subprocess.run([sys.executable, "-m", "dataset.make_synthetic_imagefolder", "--help"],
                            capture_output=True, text=True, check=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert "--num-classes" in result.stdout and "--out" in result.stdout
