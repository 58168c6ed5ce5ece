"""``scripts/launch.py`` and ``--dist multiworker``: 2 local worker processes on loopback ports.

The equivalence test trains the tiny conv + synchronised-BN classifier of
``dist_helpers.py`` with MultiWorkerMirroredStrategy (2 workers x 1 CPU replica, global
batch 8, LR scaled from batch 2) and, at the same time, in one process without
``TF_CONFIG`` (global batch 8). Each worker reads its shard of a shared-seed shuffle, so
at every step the two shards together are the single-process batch. Evaluation is checked
for both reductions: sums ("sum", EfficientNet) and per-example outputs gathered from every
worker ("concat", as Mask R-CNN's COCO evaluation).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from scripts import launch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HELPER = os.path.join(HERE, "dist_helpers.py")
LAUNCH = os.path.join(ROOT, "scripts", "launch.py")
TIMEOUT = 280


def test_tf_config_names_every_worker_and_this_task():
    config = json.loads(launch.tf_config(1, ["127.0.0.1:5001", "127.0.0.1:5002"]))
    assert config == {"cluster": {"worker": ["127.0.0.1:5001", "127.0.0.1:5002"]},
                      "task": {"type": "worker", "index": 1}}
    ports = launch.free_ports(3)
    assert len(set(ports)) == 3
    assert launch.worker_command(["main.py", "train"]) == [sys.executable, "main.py", "train"]


def test_a_failing_worker_stops_the_others():
    """Worker 1 exits with 3 at once; worker 0 would sleep 120 s but is stopped."""
    code = ("import json, os, sys, time; i = json.loads(os.environ['TF_CONFIG'])['task']['index']; "
            "print('started', i, flush=True); sys.exit(3) if i == 1 else time.sleep(120)")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, LAUNCH, "--nproc", "2", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert time.monotonic() - start < 40
    assert "[worker 0] started 0" in proc.stdout and "[worker 1] started 1" in proc.stdout
    assert "worker 1 exited with status 3" in proc.stderr


def _weights(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def test_two_workers_match_single_process_training(tmp_path):
    options = {"global_batch": 8}
    ref_dir, mw_dir = tmp_path / "ref", tmp_path / "mw"
    for folder in (ref_dir, mw_dir):
        (folder / "ws").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}

    def command(folder, *prefix):
        opts = dict(options, workspace=str(folder / "ws"), out_dir=str(folder))
        return [sys.executable, *prefix, HELPER, "worker", str(folder / "result_{index}.json"),
                "--options", json.dumps(opts)]

    reference = subprocess.Popen(command(ref_dir), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
    workers = subprocess.run(command(mw_dir, LAUNCH, "--nproc", "2"), env=env, capture_output=True, text=True,
                             timeout=TIMEOUT)
    ref_out, _ = reference.communicate(timeout=TIMEOUT)
    assert workers.returncode == 0, workers.stdout[-4000:] + workers.stderr[-2000:]
    assert reference.returncode == 0, ref_out[-4000:]

    results = [json.load(open(mw_dir / f"result_{i}.json")) for i in range(2)]
    single = json.load(open(ref_dir / "result_0.json"))
    assert [r["chief"] for r in results] == [True, False]
    assert {r["replicas"] for r in results} == {2} and single["replicas"] == 1
    assert results[0]["lr"] == results[1]["lr"] == single["lr"] == pytest.approx(0.1)  # 0.025 * 8 / 2

    w0, w1, ref = (_weights(p) for p in (mw_dir / "weights_0.npz", mw_dir / "weights_1.npz",
                                          ref_dir / "weights_0.npz"))
    assert max(np.max(np.abs(a - b)) for a, b in zip(w0, w1)) == 0.0  # workers identical
    diff = max(np.max(np.abs(a - b)) for a, b in zip(w0, ref))
    assert diff < 1e-5, diff  # measured ~1e-7
    for key in ("val.loss", "val.top1"):
        assert results[0]["eval"][key] == results[1]["eval"][key]
        assert results[0]["eval"][key] == pytest.approx(single["eval"][key], rel=1e-6)
    # "concat" validation (Mask R-CNN's): every worker gathers all 32 examples.
    for result in results:
        assert result["concat_eval"]["val.count"] == single["concat_eval"]["val.count"] == 32
        assert result["concat_eval"]["val.loss"] == pytest.approx(single["concat_eval"]["val.loss"], rel=1e-6)
        assert result["concat_eval"]["val.loss"] == pytest.approx(result["eval"]["val.loss"], rel=1e-6)

    # Only the chief wrote: one log (one PARAMETER line), its curves and the checkpoints, no scratch folders.
    assert sorted(os.listdir(mw_dir / "ws")) == ["checkpoint-latest", "curves.png", "model_best", "raport.json"]
    lines = [line for line in open(mw_dir / "ws" / "raport.json") if '"PARAMETER"' in line]
    assert len(lines) == 1 and '"lr": 0.1' in lines[0]
    assert "[worker 0]" in workers.stdout and "summary" in workers.stdout
