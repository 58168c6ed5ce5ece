"""Optional Horovod back end for ``--dist horovod`` (``horovod.tensorflow``).

One process per GPU, started by ``horovodrun -np N python main.py train ... --dist horovod``
(or ``mpirun``). Each process runs the default (one-device) strategy; this module adds
what Horovod needs around the shared trainer:

* :func:`init`: ``hvd.init()`` and pins the process to the GPU of its local rank;
* :func:`input_context`: this rank's ``tf.distribute.InputContext`` (data shard, per-rank batch);
* :func:`allreduce_average`: averages the gradients over ranks (what
  ``hvd.DistributedGradientTape`` / ``DistributedOptimizer`` do), called through
  :class:`common.training.collectives.HorovodCollectives`;
* :func:`broadcast_variables`: rank 0's initial state (model, optimizer slots, EMA) to all ranks;
* :func:`allreduce_sum` / :func:`allgather`: validation sums and concatenated outputs.

The global batch is ``per-rank batch * hvd.size()`` (see
:func:`common.training.distribution.global_batch_size`), so the linear LR scaling rule scales the
LR by ``hvd.size()``; only rank 0 writes checkpoints and logs (``is_chief``).

UNTESTED: Horovod 0.28.1 does not build against TensorFlow 2.21 in this project's image,
so this path has not been run here; it follows Horovod's documented TF2 API.
"""
from __future__ import annotations

from typing import List, Sequence

import tensorflow as tf

_HVD = None

INSTALL_HINT = ("--dist horovod needs Horovod built against this TensorFlow "
                "(e.g. HOROVOD_WITH_TENSORFLOW=1 pip install horovod, or an NGC TensorFlow image, "
                "which ships it); launch with `horovodrun -np N python main.py ... --dist horovod`. "
                "Without Horovod use --dist mirrored (one machine) or scripts/launch.py with "
                "--dist multiworker.")


def available() -> bool:
    """True when ``horovod.tensorflow`` imports."""
    try:
        import horovod.tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def init():
    """Initialises Horovod once and pins this process to the GPU of its local rank.

    Returns:
      the ``horovod.tensorflow`` module.

    Raises:
      ImportError: Horovod is not installed (the message says what to do).
    """
    global _HVD
    if _HVD is not None:
        return _HVD
    try:
        import horovod.tensorflow as hvd
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} (import failed: {err})") from err
    hvd.init()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        gpu = gpus[hvd.local_rank() % len(gpus)]
        tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.set_visible_devices(gpu, "GPU")
    _HVD = hvd
    return hvd


def active() -> bool:
    """True once :func:`init` ran in this process."""
    return _HVD is not None


def size() -> int:
    """Number of Horovod ranks (1 when inactive)."""
    return _HVD.size() if _HVD is not None else 1


def rank() -> int:
    """This process's rank (0 when inactive)."""
    return _HVD.rank() if _HVD is not None else 0


def input_context() -> tf.distribute.InputContext:
    """Shard ``rank`` of ``size`` with one replica per rank (for ``Task.build_*_dataset``)."""
    return tf.distribute.InputContext(num_input_pipelines=size(), input_pipeline_id=rank(),
                                      num_replicas_in_sync=size())


def allreduce_average(tensors: Sequence[tf.Tensor]) -> List[tf.Tensor]:
    """Each tensor averaged over ranks, in one grouped all-reduce (gradients).

    Each rank's gradient is that of its local mean loss, so the average is the
    gradient of the global-batch mean (equal per-rank batches).
    """
    return _HVD.grouped_allreduce(list(tensors), op=_HVD.Average)


def allreduce_sum(value: tf.Tensor) -> tf.Tensor:
    """Sum of ``value`` over ranks."""
    return _HVD.allreduce(value, op=_HVD.Sum)


def allreduce_mean(value: tf.Tensor) -> tf.Tensor:
    """Mean of ``value`` over ranks (logged losses)."""
    return _HVD.allreduce(value, op=_HVD.Average)


def allgather(value: tf.Tensor) -> tf.Tensor:
    """Concatenation of every rank's ``value`` along axis 0 (sizes may differ)."""
    return _HVD.allgather(value)


def broadcast_variables(variables: Sequence[tf.Variable], root_rank: int = 0) -> None:
    """Overwrites ``variables`` on every rank with ``root_rank``'s values."""
    _HVD.broadcast_variables(list(variables), root_rank=root_rank)
