"""Preemption loses nothing: SIGTERM mid-epoch saves that step and the resumed run equals the uninterrupted one;
a second signal exits at once; ``kill -9`` loses at most the save interval.

A real training run (the points family, through ``main.py`` and the shared trainer: 32 steps per epoch, three
epochs) in a subprocess gets the signal from the test-only fault injector right after a chosen step.
"""
import os

import numpy as np
import pytest

from common.training.checkpoint import BEST, LATEST
from fault_injector import SIGNAL_ENV
from points_family import checkpoint_meta, checkpoint_tensors, run_training, write_points

TRAIN = ["--epochs", "3", "--eval-every", "1", "-b", "16", "--seed", "1", "--config", "task.lr=0.001"]


def _train(data, work, signal_at=None, extra=()):
    return run_training([data, *TRAIN, "--workspace", work, *extra], {SIGNAL_ENV: signal_at} if signal_at else None)


def _meta(work, name=LATEST):
    return checkpoint_meta(os.path.join(work, name))


def _weights(folder):
    return checkpoint_tensors(folder, ("model/", "optimizer/"))


def _assert_same_run(work, reference):
    for name in (BEST, LATEST):
        ours, theirs = _weights(os.path.join(work, name)), _weights(os.path.join(reference, name))
        assert ours.keys() == theirs.keys() and len(ours) > 4
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{name} {key}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt")
    data = write_points(str(root / "points"), n=512, separation=1.0, noise=1.0)
    work = str(root / "reference")
    result = _train(data, work)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "data": data, "work": work}


def test_sigterm_mid_epoch_saves_that_step_and_the_resumed_run_equals_the_uninterrupted(reference):
    work = str(reference["root"] / "sigterm")
    stopped = _train(reference["data"], work, signal_at="SIGTERM:40")
    assert stopped.returncode == 128 + 15, stopped.stderr[-2000:]
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("SIGTERM: saved at epoch 2 step 8") and f"--resume {work}" in last, last
    assert (_meta(work)["epoch"], _meta(work)["step"]) == (1, 8)
    resumed = _train(reference["data"], work, extra=["--resume", work])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _meta(work)["epoch"] == 3 and "step" not in _meta(work)
    _assert_same_run(work, reference["work"])


def test_a_second_signal_exits_at_once_without_saving(reference):
    work = str(reference["root"] / "twice")
    stopped = _train(reference["data"], work, signal_at="SIGTERMx2:40")
    assert stopped.returncode == -15, stopped.stderr[-2000:]
    assert _meta(work)["epoch"] == 1 and "step" not in _meta(work)  # the epoch-1 save only


def test_kill_9_loses_at_most_the_save_interval(reference):
    work = str(reference["root"] / "kill9")
    killed = _train(reference["data"], work, signal_at="SIGKILL:45", extra=["--save-every-steps", "10"])
    assert killed.returncode == -9, killed.stderr[-2000:]
    meta = _meta(work)
    assert 45 - (meta["epoch"] * 32 + meta["step"]) <= 10, meta  # saved after step 40: epoch 2 step 8
    resumed = _train(reference["data"], work, extra=["--resume", work, "--save-every-steps", "10"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_run(work, reference["work"])


def test_a_signal_to_one_worker_stops_every_worker_at_the_same_step(reference, tmp_path):
    """``--dist multiworker`` over two processes, SIGTERM to worker 1 only after its 40th step: both workers
    agree on that step (one all-gather per step), the chief saves it, both end with 143 and the same step. (This
    also covers ``main.py train --dist multiworker`` itself, which failed at start-up before: the strategy must
    be created before anything starts TensorFlow's context.)"""
    import subprocess
    import sys

    from points_family import ROOT

    work = str(tmp_path / "mw")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", SIGNAL_ENV)}
    env.update(PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", **{SIGNAL_ENV: "SIGTERM:40@1"})
    script = os.path.join(ROOT, "tests", "common", "points_family.py")
    command = [sys.executable, os.path.join(ROOT, "scripts", "launch.py"), "--nproc", "2", sys.executable, script,
               "train", "--model", "points-mlp", reference["data"], *TRAIN, "--workspace", work, "--dist", "multiworker"]
    proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 128 + 15, output[-3000:]
    lines = sorted({line.split(": saved at ", 1)[1] for line in output.splitlines() if ": saved at epoch " in line})
    assert len(lines) == 1, output[-3000:]  # the same step on both workers
    assert "(to another worker)" in output and "SIGTERM received" in output
    meta = _meta(work)
    assert lines[0].startswith(f"epoch {meta['epoch'] + 1} step {meta['step']} ")
