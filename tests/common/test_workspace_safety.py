"""Nothing may lose a user's run: one training run per workspace, a diverged epoch never saved.

* a second ``train`` into a workspace that a live run holds is refused with one line naming the holder,
  and writes nothing there; the lock of a dead run is taken over with a warning;
* a non-finite training or validation loss stops the run with one line naming the epoch; that epoch is
  never ``model_best`` and ``checkpoint-latest`` keeps the last finite one.
"""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import main as entry
from common.io.workspace import LOCK_FILE, WorkspaceBusy, WorkspaceLock
from points_family import register_points, write_points

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLD = ("import sys, time; sys.path.insert(0, {root!r}); from common.io.workspace import WorkspaceLock; "
        "held = WorkspaceLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(300)")


@pytest.fixture
def points(tmp_path):
    family = register_points()
    yield write_points(str(tmp_path / "points"))
    from common.command import registry

    registry.unregister(family)


def _holder(workspace):
    """A live process holding ``workspace``'s lock."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(root=ROOT), workspace], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _train(data, work, *flags):
    return entry.main(["train", "--model", "points-mlp", data, "--workspace", work, "--epochs", "2", "-b", "16",
                       *flags])


def test_a_second_run_into_a_held_workspace_is_refused_and_writes_nothing(points, tmp_path, capsys):
    work = str(tmp_path / "run")
    holder = _holder(work)
    try:
        assert _train(points, work) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(err) == 1 and "in use by another training run" in err[0] and f"pid {holder.pid}" in err[0], err
        assert sorted(os.listdir(work)) == [LOCK_FILE]  # no log, no checkpoint, no config.json of the refused run
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_dead_run_is_taken_over_with_a_warning(points, tmp_path, caplog):
    work = str(tmp_path / "run")
    holder = _holder(work)
    holder.kill()  # kill -9: the lock file still names it, the OS released the lock
    holder.wait()
    with caplog.at_level(logging.WARNING):
        assert _train(points, work) == 0
    assert any("no longer running" in r.getMessage() and f"pid {holder.pid}" in r.getMessage() for r in caplog.records)
    assert open(os.path.join(work, LOCK_FILE)).read() == ""  # released at the end
    WorkspaceLock(work).acquire().release()


def test_the_lock_is_exclusive_and_released(tmp_path):
    first = WorkspaceLock(str(tmp_path)).acquire()
    with pytest.raises(WorkspaceBusy, match=f"pid {os.getpid()}"):
        WorkspaceLock(str(tmp_path)).acquire()
    first.release()
    with WorkspaceLock(str(tmp_path)):
        pass


def _epochs_saved(work, name):
    meta = os.path.join(work, name, "meta.json")
    return json.load(open(meta))["epoch"] if os.path.exists(meta) else None


def test_a_diverged_epoch_stops_the_run_and_is_never_saved(points, tmp_path, capsys):
    """Epoch 1 trains normally; then the learning rate jumps to 1e38 (a piecewise schedule): the weights overflow and epoch 2 diverges."""
    work = str(tmp_path / "run")
    flags = ["--epochs", "3", "--eval-every", "1", "--config", "task.lr_schedule=piecewise", "task.lr=0.01",
             "task.lr_batch=16", "task.lr_boundaries=(1.0,)", "task.lr_values=(1e38,)"]
    assert _train(points, work, *flags) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]  # (and progress bars)
    assert len(err) == 1 and "the run diverged" in err[0] and "epoch 2" in err[0], err
    assert "checkpoints keep epoch 1" in err[0] and f"--resume {work}" in err[0], err
    assert _epochs_saved(work, "model_best") == 1 and _epochs_saved(work, "checkpoint-latest") == 1
    best = json.load(open(os.path.join(work, "model_best", "meta.json")))["metrics"]
    assert all(np.isfinite(v) for v in best.values() if isinstance(v, float))
