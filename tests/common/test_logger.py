"""DLLogger-compatible lines, stdout format, chief-only writing, progress bar."""
import io
import json

from common.io.logger import Logger, ProgressBar, dllogger_line, read_dllogger


def test_dllogger_line_format():
    line = dllogger_line([1, 20], {"train.loss": 2.5}, start_time=0.0)
    assert line.startswith("DLLL ")
    record = json.loads(line[5:])
    assert set(record) == {"timestamp", "datetime", "elapsedtime", "type", "step", "data"}
    assert record["type"] == "LOG" and record["step"] == [1, 20] and record["data"] == {"train.loss": 2.5}
    float(record["timestamp"])
    meta = json.loads(dllogger_line("train.loss", {"unit": "nat"}, 0.0, kind="METADATA")[5:])
    assert meta["type"] == "METADATA" and meta["metric"] == "train.loss" and meta["metadata"] == {"unit": "nat"}


def test_logger_writes_file_and_readable_stdout(tmp_path):
    out = io.StringIO()
    logger = Logger(log_file=str(tmp_path / "log.json"), stream=out)
    logger.log("PARAMETER", {"lr": 0.1, "model": "b0"})
    logger.log((2, 10), {"train.loss": 1.23456})
    logger.log((), {"val.top1": 91.0})
    logger.close()
    records = read_dllogger(str(tmp_path / "log.json"))
    assert [r["step"] for r in records] == ["PARAMETER", [2, 10], []]
    assert records[1]["data"]["train.loss"] == 1.23456
    text = out.getvalue().splitlines()
    assert text[1] == "epoch 2 iter 10 | train.loss 1.235" and text[2] == "summary | val.top1 91"


def test_non_chief_writes_nothing(tmp_path):
    out = io.StringIO()
    logger = Logger(log_file=str(tmp_path / "log.json"), is_chief=False, stream=out)
    logger.log((1,), {"train.loss": 1.0})
    logger.close()
    assert not (tmp_path / "log.json").exists() and out.getvalue() == ""


def test_tensorboard_scalars(tmp_path):
    logger = Logger(tensorboard_dir=str(tmp_path / "tb"), stream=io.StringIO())
    logger.log((1,), {"train.loss": 1.0, "name": "x"})
    logger.flush()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())


def test_progress_bar_prints_about_every_tenth_when_not_a_tty():
    out = io.StringIO()
    bar = ProgressBar(20, desc="epoch 1/1", unit="img", stream=out)
    for _ in range(20):
        bar.update(1, images=8, loss=0.5)
    bar.close()
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 12
    assert lines[-1].startswith("epoch 1/1 [########################] 20/20") and "loss=0.5" in lines[-1]
