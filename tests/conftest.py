"""Test-suite set-up: quiet TensorFlow, repository root importable, shared fixtures path."""
import os
import pathlib
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"

# The slowest test files, longest first (per-file totals of a clean-clone run, 2 cores). `make test` runs
# two pytest-xdist workers with one file per work unit in collection order (`--dist loadfile
# --no-loadscope-reorder`): starting the long files first lets both workers finish together.
SLOW_FILES_FIRST = (
    "mrcnn_tf2/test_convergence.py",
    "mrcnn_tf2/test_cli.py",
    "mrcnn_tf2/test_walkthrough.py",
    "efficientnet_tf2/test_transfer.py",
    "efficientnet_tf2/test_onnx_runtime.py",
    "efficientnet_tf2/test_training.py",
    "common/test_registry.py",
    "mrcnn_tf2/test_mrcnn_onnx_export.py",
)


def _slow_rank(item) -> int:
    """Position of ``item``'s file in ``SLOW_FILES_FIRST`` (the rest after, in their own order)."""
    path = pathlib.Path(str(item.fspath)).resolve().relative_to(ROOT / "tests").as_posix()
    return SLOW_FILES_FIRST.index(path) if path in SLOW_FILES_FIRST else len(SLOW_FILES_FIRST)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_slow_rank)  # stable: each file keeps its own order


# Mask R-CNN files whose runs hold the most memory (several GB each): one work unit, so one worker runs them one
# after the other and the two workers never hold two of them at once (CI has 24 GB).
ONE_WORKER = ("mrcnn_tf2/test_convergence.py", "mrcnn_tf2/test_cli.py", "mrcnn_tf2/test_walkthrough.py")


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent without it
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with the :data:`ONE_WORKER` files as one work unit (other modes: xdist's own)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduler(LoadFileScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::")[0]
            return "tests/heavy-mask-rcnn" if path.removeprefix("tests/") in ONE_WORKER else super()._split_scope(nodeid)

    return Scheduler(config, log)
