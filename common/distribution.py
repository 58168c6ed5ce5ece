"""Distribution-strategy factory and global-batch arithmetic for both models.

``create_strategy("auto")`` picks MirroredStrategy when several GPUs are
visible and the default (one-device) strategy otherwise. Multi-worker
training reads ``TF_CONFIG`` (``"multiworker"``).
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import tensorflow as tf

STRATEGIES = ("auto", "none", "one_device", "mirrored", "multiworker")


def create_strategy(kind: str = "auto", devices: Optional[Sequence[str]] = None) -> tf.distribute.Strategy:
    """Builds a ``tf.distribute.Strategy``.

    Args:
      kind: one of :data:`STRATEGIES`. ``none`` is TensorFlow's default
        strategy; ``one_device`` pins to ``devices[0]`` (or the first GPU/CPU).
      devices: device strings for ``mirrored``/``one_device``.
    """
    if kind not in STRATEGIES:
        raise ValueError(f"Unknown strategy. Received: kind={kind!r}; expected one of {STRATEGIES}")
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "auto":
        kind = "mirrored" if len(gpus) > 1 else "none"
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "one_device":
        device = (devices or [gpus[0].name if gpus else "/cpu:0"])[0]
        return tf.distribute.OneDeviceStrategy(device)
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    if "TF_CONFIG" not in os.environ:
        raise ValueError("--dist multiworker needs TF_CONFIG (cluster spec and task); see scripts/launch.py")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: Optional[tf.distribute.Strategy] = None) -> bool:
    """True on the worker that writes checkpoints and logs (always true without TF_CONFIG)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    if not task:
        return True
    return task.get("type") == "chief" or (task.get("type") == "worker" and task.get("index", 0) == 0
                                           and "chief" not in config.get("cluster", {}))


def global_batch_size(per_replica_batch: int, strategy: tf.distribute.Strategy) -> int:
    """Per-replica batch times the number of replicas in sync."""
    return int(per_replica_batch) * strategy.num_replicas_in_sync


def scale_learning_rate(base_lr: float, global_batch: int, reference_batch: int) -> float:
    """Linear scaling rule: ``base_lr`` is the rate for ``reference_batch`` images."""
    if reference_batch <= 0:
        raise ValueError(f"reference_batch must be positive. Received: reference_batch={reference_batch}")
    return base_lr * global_batch / reference_batch
