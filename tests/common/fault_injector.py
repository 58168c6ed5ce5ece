"""Test-only fault injector: SIGKILLs a real run at a chosen moment of a checkpoint save.

Production code has no hook for it: :func:`install` wraps ``common.training.checkpoint._swap_into_place`` (the
step that puts a completely written save in place) in the process under test. ``spec`` is
``<name>:<point>[:<n>]``: the ``n``-th (default first) save of ``<name>`` (``model_best`` or
``checkpoint-latest``) is killed at ``point``:

* ``written``  -- every file is in the temporary folder, nothing moved yet;
* ``swapping`` -- the previous copy has been moved aside to ``<name>.old``, the new one is not in place;
* ``done``     -- the new copy is in place.

:func:`install_signal` sends the process a signal right after its ``n``-th training step
(``SIGTERM:40``; ``SIGTERMx2:40`` twice in a row; ``SIGKILL:45``; ``SIGTERM:40@1`` to worker 1 of a
multi-worker run only), as a preemption would.

``points_family.py`` installs them when ``$TF2VISION_KILL_AT`` / ``$TF2VISION_SIGNAL_AT`` hold a spec
(``test_kill_resume.py``, ``test_preemption.py``).
"""
import os
import signal
from unittest import mock

from common.training import checkpoint

KILL_ENV = "TF2VISION_KILL_AT"
SIGNAL_ENV = "TF2VISION_SIGNAL_AT"
POINTS = ("written", "swapping", "done")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(spec: str) -> None:
    """Wraps the checkpoint swap so the save named by ``spec`` dies at its point (see the module doc)."""
    target, point, *nth = spec.split(":")
    if point not in POINTS:
        raise ValueError(f"{KILL_ENV}={spec!r}: the point must be one of {POINTS}")
    wanted, counts, swap = int(nth[0]) if nth else 1, {}, checkpoint._swap_into_place

    def swap_with_fault(tmp: str, final: str) -> None:
        name = os.path.basename(final)
        counts[name] = counts.get(name, 0) + 1
        hit = name == target and counts[name] == wanted
        if hit and point == "written":
            _die()
        if hit and point == "swapping":
            replace = os.replace

            def replace_then_die(src, dst):
                replace(src, dst)
                if dst == final + ".old":
                    _die()

            with mock.patch.object(os, "replace", replace_then_die):
                swap(tmp, final)
        else:
            swap(tmp, final)
        if hit and point == "done":
            _die()

    checkpoint._swap_into_place = swap_with_fault


def _worker_index() -> int:
    import json

    return int(json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0))


def install_signal(spec: str) -> None:
    """Wraps the training step so the process gets ``spec``'s signal after that step (see the module doc)."""
    from common.training.steps import TrainStep

    spec, _, worker = spec.partition("@")  # "@1": only in worker 1 of a multi-worker run (TF_CONFIG's index)
    if worker and _worker_index() != int(worker):
        return
    name, step = spec.split(":")
    name, _, times = name.partition("x")
    signum, after, calls = getattr(signal, name), int(step), [0]
    step_call = TrainStep.__call__

    def step_then_signal(self, batch):
        out = step_call(self, batch)
        calls[0] += 1
        if calls[0] == after:
            for _ in range(int(times or 1)):
                os.kill(os.getpid(), signum)
        return out

    TrainStep.__call__ = step_then_signal
