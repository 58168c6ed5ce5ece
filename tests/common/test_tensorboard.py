"""TensorBoard by default (common.io.tensorboard): scalars on the training step, pictures, PR curves."""
import io
import os

import numpy as np
from PIL import Image

from common.command import cli
from common.io.logger import Logger
from common.io.tensorboard import picture_tag


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(folder, size_guidance={"tensors": 0})
    events.Reload()
    return events


def test_picture_tags_are_stable_across_validations():
    assert picture_tag("/run/eval/confusion.png", "/run") == "eval/confusion"
    assert picture_tag("/run/eval/worst/03_cat_001.png", "/run") == "eval/worst/03"
    assert picture_tag("/run/curves.png", "/run") == "curves"


def test_scalars_pictures_and_pr_curves_land_on_the_training_step(tmp_path):
    png = str(tmp_path / "eval" / "per_class_ap.png")
    os.makedirs(os.path.dirname(png))
    Image.fromarray(np.full((12, 16, 3), 90, np.uint8)).save(png)
    logger = Logger(tensorboard_dir=str(tmp_path / "tb"), stream=io.StringIO())
    logger.global_step = lambda: 40
    logger.log((2,), {"val.loss": 0.5, "note": "text"})
    logger.log((), {"val.loss": 0.5})  # a training run's summary repeats its epochs: not written again
    logger.pictures([png, str(tmp_path / "missing.png"), str(tmp_path / "table.csv")], str(tmp_path))
    recall = np.linspace(0, 1, 101)
    logger.pr_curves({"pr_bbox_iou50/all": (1 - recall, recall)})
    logger.flush()
    events = _events(str(tmp_path / "tb"))
    assert [e.step for e in events.Tensors("val.loss")] == [40]
    picture = events.Tensors("eval/per_class_ap")[0].tensor_proto
    assert picture.string_val[0] == b"16" and picture.string_val[2].startswith(b"\x89PNG")  # width, height, PNG
    curve = events.Tensors("pr_bbox_iou50/all/pr_curves")[0]
    from tensorflow.python.framework import tensor_util

    data = tensor_util.MakeNdarray(curve.tensor_proto)
    assert data.shape == (6, 101) and np.allclose(data[4], 1 - recall) and np.allclose(data[5], recall)
    assert "pr_curves" in events.SummaryMetadata("pr_bbox_iou50/all/pr_curves").plugin_data.plugin_name


def test_tensorboard_is_on_by_default_and_can_be_switched_off():
    on = cli.parse(["train", "--model", "efficientnet-b0", "data"]).experiment.runtime
    off = cli.parse(["train", "--model", "efficientnet-b0", "data", "--no-tensorboard"]).experiment.runtime
    assert on.tensorboard and on.log_tensorboard is None and not off.tensorboard
