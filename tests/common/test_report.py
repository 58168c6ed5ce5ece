"""``main.py report``: one self-contained report.html of a run (common.io.report), checked as text and, where
Chromium is installed, rendered headless."""
import base64
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import main as cli
from common.io.report import SECTIONS, wall_seconds, write_report

HOSTILE = "<script>alert(1)</script>"


def _png(path, color):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((20, 30, 3), color, np.uint8)).save(path)


def _log_line(step, data, elapsed):
    return "DLLL " + json.dumps({"elapsedtime": elapsed, "type": "LOG", "step": step, "data": data}) + "\n"


@pytest.fixture
def workspace(tmp_path):
    """A classification run's workspace as train writes it (log resumed once, every picture, a data check)."""
    ws = str(tmp_path / "run")
    os.makedirs(os.path.join(ws, "eval", "worst"))
    with open(os.path.join(ws, "raport.json"), "w") as log:
        log.write(_log_line("PARAMETER", {"model": "efficientnet-b0"}, 1.0))
        log.write(_log_line([1], {"train.loss": 2.0, "train.total_ips": 50.0, "val.top1": 40.0}, 60.0))
        log.write(_log_line([2], {"train.loss": 1.0, "train.total_ips": 55.0, "val.top1": 70.0}, 10.0))  # resumed
        log.write('DLLL {"cut short by a crash')
    json.dump({"model": "efficientnet-b0", "trainer": {"epochs": 2}}, open(os.path.join(ws, "config.json"), "w"))
    for name, color in (("curves.png", 10), ("eval/confusion.png", 80), ("eval/worst/01_a.png", 150),
                        ("eval/worst/02_b.png", 200)):
        _png(os.path.join(ws, name), color)
    with open(os.path.join(ws, "eval", "per_class.csv"), "w") as handle:
        handle.write(f"class,images,correct\ncat,10,8\n\"{HOSTILE}\",10,5\n")
    with open(os.path.join(ws, "eval", "confusion.csv"), "w") as handle:
        handle.write(f"true \\ predicted,cat,{HOSTILE}\ncat,8,2\n{HOSTILE},5,5\n")
    with open(os.path.join(ws, "eval", "worst", "worst.csv"), "w") as handle:
        handle.write("rank,file\n1,a.jpg\n2,b.jpg\n")
    with open(os.path.join(ws, "unusable_train.tsv"), "w") as handle:
        handle.write(f"train/cat/{HOSTILE}.jpg\tnot an image\n")
    return ws


def test_report_has_every_section_inlined_and_escaped(workspace):
    page = open(write_report(workspace), encoding="utf-8").read()
    for section in SECTIONS:
        if section != "pr-curves":  # a classification run has none
            assert f'<section id="{section}">' in page, section
    assert 'id="pr-curves"' not in page  # absent pictures leave their section out, no broken image
    assert HOSTILE not in page and "&lt;script&gt;" in page  # file and class names cannot inject markup
    assert page.count("data:image/png;base64,") == 4 and "src=\"/" not in page and "http" not in page
    first = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(first).startswith(b"\x89PNG")
    assert "1m 10s" in page  # wall time: 60 s, then the resumed process's 10 s
    assert "cat" in page and "predicted as" in page  # top confusions from confusion.csv


def test_wall_time_adds_each_process_of_a_resumed_run():
    records = [{"elapsedtime": t} for t in (1, 30, 2, 5, 1, 4)]
    assert wall_seconds(records) == 30 + 5 + 4


def test_report_command_and_its_errors(workspace, tmp_path, capsys):
    assert cli.main(["report", "--workspace", workspace]) == 0
    assert capsys.readouterr().out.strip() == f"report: {os.path.join(workspace, 'report.html')}"
    assert cli.main(["report", "--workspace", str(tmp_path / "typo")]) == 2
    assert "no workspace folder" in capsys.readouterr().err
    os.makedirs(tmp_path / "empty")
    assert cli.main(["report", "--workspace", str(tmp_path / "empty")]) == 2
    assert "holds no run" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium); "
                                               "the text checks above still run")
def test_report_renders_in_headless_chromium(workspace, tmp_path):
    """Opened from disk with no server: the DOM Chromium builds holds the sections, and the screenshot shows
    the embedded pictures (the dark curves.png pixels, not only white page)."""
    page = write_report(workspace)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([*flags, "--dump-dom", "file://" + page], capture_output=True, text=True, timeout=120).stdout
    for section in ("summary", "curves", "per-class", "confusion", "worst", "data-check", "config"):
        assert f'<section id="{section}">' in dom, section
    shot = str(tmp_path / "shot.png")
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=900,700", "file://" + page],
                   capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert (pixels.max(axis=-1) < 40).sum() > 300  # curves.png (value 10) drawn, not a blank page
