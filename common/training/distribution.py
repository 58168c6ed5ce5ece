"""Distribution-strategy factory and global-batch arithmetic for both models.

``--dist`` kinds (:data:`STRATEGIES`):

* ``auto``: ``multiworker`` when ``TF_CONFIG`` names several tasks, else
  MirroredStrategy when several GPUs are visible, else ``none``;
* ``none``: TensorFlow's default strategy (one device);
* ``one_device``: pinned to one device;
* ``mirrored``: synchronous data parallelism over all local GPUs (or ``devices``);
* ``multiworker``: MultiWorkerMirroredStrategy, cluster and task read from
  ``TF_CONFIG`` (``scripts/launch.py --nproc N`` sets it for local workers);
* ``horovod``: one process per GPU under ``horovodrun``/``mpirun`` (see :mod:`common.training.horovod`).

The global batch is the per-replica batch times every replica of every worker
(or Horovod rank); the learning rate scales linearly with it.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import tensorflow as tf

from common.training import horovod

STRATEGIES = ("auto", "none", "one_device", "mirrored", "multiworker", "horovod")


def create_strategy(kind: str = "auto", devices: Optional[Sequence[str]] = None,
                    gpus: Optional[int] = None) -> tf.distribute.Strategy:
    """Builds a ``tf.distribute.Strategy``.

    Args:
      kind: one of :data:`STRATEGIES`. ``none`` is TensorFlow's default
        strategy; ``one_device`` pins to ``devices[0]`` (or the first GPU/CPU);
        ``horovod`` initialises Horovod and returns the default strategy.
      devices: device strings for ``mirrored``/``one_device``.
      gpus: NVIDIA's ``--gpus N``: mirrored over the first N GPUs (1: one device).

    Raises:
      ValueError: unknown ``kind``, or ``multiworker`` without ``TF_CONFIG``.
      ImportError: ``horovod`` without Horovod installed (message says what to do).
    """
    if kind not in STRATEGIES:
        raise ValueError(f"Unknown strategy. Received: kind={kind!r}; expected one of {STRATEGIES}")
    if kind == "horovod":
        horovod.init()
        return tf.distribute.get_strategy()
    if kind == "multiworker" or (kind == "auto" and cluster_size() > 1):
        return _multiworker()  # before anything initialises TensorFlow's devices
    visible = tf.config.list_logical_devices("GPU")
    if gpus is not None and kind in ("auto", "mirrored"):
        if gpus > max(len(visible), 1):
            raise ValueError(f"--gpus {gpus}: this machine has {len(visible)} GPU(s)")
        if gpus == 1:
            return tf.distribute.get_strategy()
        return tf.distribute.MirroredStrategy(devices=[d.name for d in visible[:gpus]])
    gpus = visible
    if kind == "auto":
        kind = "mirrored" if len(gpus) > 1 else "none"
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "one_device":
        device = (devices or [gpus[0].name if gpus else "/cpu:0"])[0]
        return tf.distribute.OneDeviceStrategy(device)
    return tf.distribute.MirroredStrategy(devices=devices)


def _multiworker() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy from ``TF_CONFIG``; must run before TensorFlow lists its devices."""
    if "TF_CONFIG" not in os.environ:
        raise ValueError("--dist multiworker needs TF_CONFIG (cluster spec and task); "
                         "start the workers with scripts/launch.py --nproc N")
    global _collectives_started
    _collectives_started = True
    return tf.distribute.MultiWorkerMirroredStrategy()


_collectives_started = False


def collectives_started() -> bool:
    """Whether this process created a MultiWorkerMirroredStrategy (its collective runtime is running)."""
    return _collectives_started


def cluster_size() -> int:
    """Number of tasks in ``TF_CONFIG``'s cluster (0 without ``TF_CONFIG``)."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}").get("cluster", {})
    return sum(len(tasks) for tasks in cluster.values())


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the process that writes checkpoints and logs.

    Horovod: rank 0. A strategy with a cluster resolver (multi-worker): its ``chief``
    task, or worker 0 when the cluster has no chief. Otherwise (one process) always true.
    """
    if horovod.active():
        return horovod.rank() == 0
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    jobs = resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and (resolver.task_id or 0) == 0
                                             and "chief" not in jobs)


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Processes taking part in training (cluster workers and chief, Horovod ranks, or 1)."""
    if horovod.active():
        return horovod.size()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return max(1, len(jobs.get("worker", [])) + len(jobs.get("chief", [])))


def global_batch_size(per_replica_batch: int, strategy: tf.distribute.Strategy) -> int:
    """Per-replica batch times the number of replicas in sync (times Horovod ranks)."""
    return int(per_replica_batch) * strategy.num_replicas_in_sync * horovod.size()


def scale_learning_rate(base_lr: float, global_batch: int, reference_batch: int) -> float:
    """Linear scaling rule: ``base_lr`` is the rate for ``reference_batch`` images."""
    if reference_batch <= 0:
        raise ValueError(f"reference_batch must be positive. Received: reference_batch={reference_batch}")
    return base_lr * global_batch / reference_batch
