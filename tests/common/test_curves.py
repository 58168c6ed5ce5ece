"""``curves.png`` from a run's own log (common.io.curves): per-epoch series, resumed epochs once, a real PNG."""
from PIL import Image

from common.io.curves import epoch_series, plot_curves
from common.io.logger import Logger


def _log(path):
    logger = Logger(str(path), stream=open("/dev/null", "w"))
    logger.log("PARAMETER", {"model": "x"})
    for epoch in (1, 2, 3):
        logger.log((epoch, 10), {"train.loss": 9.0, "train.lr": 0.5})  # an iteration line: not an epoch point
        logger.log((epoch,), {"val.loss": 2.0 / epoch, "val.top1": 30.0 * epoch, "val.top5": 90.0})
        logger.log((epoch,), {"train.loss": 3.0 / epoch, "train.lr": 0.1 / epoch})
    logger.drop_after(2)  # a resume redoes epoch 3
    logger.log((3,), {"train.loss": 0.5, "train.lr": 0.01})
    logger.flush()


def test_series_are_per_epoch_and_a_redone_epoch_counts_once(tmp_path):
    _log(tmp_path / "raport.json")
    series = epoch_series(str(tmp_path / "raport.json"))
    assert series["train.loss"] == {1: 3.0, 2: 1.5, 3: 0.5}
    assert series["val.top1"] == {1: 30.0, 2: 60.0}


def test_the_png_opens_with_every_panel(tmp_path):
    _log(tmp_path / "raport.json")
    out = plot_curves(str(tmp_path / "raport.json"), str(tmp_path / "curves.png"), "classification")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] >= 3 * 400  # three panels side by side


def test_no_finished_epoch_draws_nothing(tmp_path):
    Logger(str(tmp_path / "raport.json")).log("PARAMETER", {"model": "x"})
    assert plot_curves(str(tmp_path / "raport.json"), str(tmp_path / "curves.png")) is None
