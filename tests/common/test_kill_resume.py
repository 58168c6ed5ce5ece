"""``kill -9`` at the worst moments of checkpointing, then ``--resume``: nothing is lost.

A real training run (the points family of ``points_family.py``, through ``main.py`` and the
shared trainer) in a subprocess is SIGKILLed by the test-only fault injector
(``fault_injector.py``, ``TF2VISION_KILL_AT``) inside the ``model_best`` write, inside its swap, between the best
and the latest copy, and inside the ``checkpoint-latest`` swap; resumed, it must end with
the same ``model_best`` and final weights as an uninterrupted run, no temporary folders,
and one DLLogger line per epoch metric.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from common.training.checkpoint import BEST, LATEST
from fault_injector import KILL_ENV
from points_family import checkpoint_meta as _meta
from points_family import checkpoint_tensors as _weights
from points_family import run_training, write_points

# Learns over several epochs (val top-1 46 -> 84 -> 94 %): model_best is rewritten after epochs 1, 2 and 3.
TRAIN = ["--epochs", "4", "--eval-every", "1", "-b", "16", "--seed", "1", "--config", "task.lr=0.001"]


def _train(data, work, kill_at=None, resume=False):
    resume_flags = ["--resume", work] if resume else []
    return run_training([data, *TRAIN, "--workspace", work, *resume_flags], {KILL_ENV: kill_at} if kill_at else None)


def _epoch_lines(work):
    """(step, metric names) of every per-epoch DLLogger line."""
    lines = []
    for line in open(os.path.join(work, "raport.json")):
        record = json.loads(line[5:]) if line.startswith("DLLL ") else {}
        if isinstance(record.get("step"), list) and len(record["step"]) == 1:
            lines.append((record["step"][0], tuple(sorted(record["data"]))))
    return lines


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    data = write_points(str(root / "points"), n=512, separation=1.0, noise=1.0)
    work = str(root / "reference")
    result = _train(data, work)
    assert result.returncode == 0, result.stderr[-3000:]
    best_epochs = [e for e, keys in _epoch_lines(work) if "val.top1" in keys]
    return {"root": root, "data": data, "work": work, "best_epoch": _meta(os.path.join(work, BEST))["epoch"],
            "epochs_logged": best_epochs}


def test_the_reference_run_rewrites_model_best_after_several_epochs(uninterrupted):
    """The kill points below need best copies after epochs 2 and 3 (val top-1 keeps improving)."""
    assert uninterrupted["best_epoch"] >= 3, uninterrupted
    assert uninterrupted["epochs_logged"] == [1, 2, 3, 4]


@pytest.mark.parametrize("kill_at", ["model_best:written:2", "model_best:swapping:3", "model_best:done:2",
                                     "checkpoint-latest:swapping:3"])
def test_a_kill_during_checkpointing_loses_nothing(uninterrupted, kill_at):
    work = str(uninterrupted["root"] / kill_at.replace(":", "_"))
    killed = _train(uninterrupted["data"], work, kill_at=kill_at)
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    resumed = _train(uninterrupted["data"], work, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    reference = uninterrupted["work"]
    for name in (BEST, LATEST):
        assert _meta(os.path.join(work, name))["epoch"] == _meta(os.path.join(reference, name))["epoch"], name
        ours, theirs = _weights(os.path.join(work, name)), _weights(os.path.join(reference, name))
        assert ours.keys() == theirs.keys()
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{name} {key}")
    leftovers = [n for n in os.listdir(work) if ".tmp-" in n or n.endswith(".old")]
    assert not leftovers, leftovers
    lines = _epoch_lines(work)
    assert len(lines) == len(set(lines)), f"duplicated epoch lines after the resume: {lines}"
    assert sorted(e for e, keys in lines if "val.top1" in keys) == [1, 2, 3, 4]


def test_opening_a_workspace_finishes_an_interrupted_save(tmp_path):
    """A lone ``.old`` copy (killed mid-swap) is moved back, temporary folders are deleted."""
    from common.training.checkpoint import CheckpointManager

    work = str(tmp_path)
    manager = CheckpointManager(work, {"v": tf.Variable(3.0)})
    manager.save_best({"epoch": 1})
    os.replace(os.path.join(work, BEST), os.path.join(work, BEST + ".old"))
    os.makedirs(os.path.join(work, ".checkpoint-latest.tmp-abc"))
    CheckpointManager(work, {"v": tf.Variable(0.0)})
    assert sorted(os.listdir(work)) == [BEST]
    assert _meta(os.path.join(work, BEST))["epoch"] == 1
