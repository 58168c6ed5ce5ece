"""How replicas, workers and ranks exchange values: one interface over ``tf.distribute`` and Horovod.

The training and validation steps (:mod:`common.training.steps`) only call this interface, so a
distribution back end is one adapter class, not branches in the loop:

* :class:`StrategyCollectives`: any ``tf.distribute.Strategy`` (default, mirrored, multi-worker);
* :class:`HorovodCollectives`: one process per GPU under ``horovodrun`` (``--dist horovod``).
  UNTESTED: Horovod 0.28.1 does not build against TensorFlow 2.21 here (see :mod:`common.training.horovod`).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import tensorflow as tf

from common.training import distribution, horovod


def map_present(fn: Callable[[List[tf.Tensor]], Sequence[tf.Tensor]], grads) -> list:
    """``fn`` on the non-None entries of ``grads`` (one grouped call); ``None`` stays in place."""
    present = [i for i, g in enumerate(grads) if g is not None]
    reduced = fn([grads[i] for i in present])
    out = list(grads)
    for i, g in zip(present, reduced):
        out[i] = g
    return out


class StrategyCollectives:
    """Collectives of a ``tf.distribute.Strategy``.

    Gradients are *summed* over replicas: each replica's loss is its mean divided by
    :attr:`replicas`, so the sum is the gradient of the global-batch mean.
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        self.strategy = strategy

    @property
    def replicas(self) -> int:
        """Replicas whose losses are divided (and gradients summed) in the replica context."""
        return self.strategy.num_replicas_in_sync

    @property
    def is_chief(self) -> bool:
        return distribution.is_chief(self.strategy)

    @property
    def num_workers(self) -> int:
        return distribution.num_workers(self.strategy)

    def dataset(self, build: Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]):
        """``build(input_context)`` once (one replica) or per input pipeline (several)."""
        if self.strategy.num_replicas_in_sync > 1:
            return self.strategy.distribute_datasets_from_function(build)
        return build(None)

    def sum_gradients(self, grads) -> list:
        """Replica context: gradients summed over replicas (``None`` stays)."""
        if self.strategy.num_replicas_in_sync == 1:
            return grads
        return map_present(lambda g: tf.distribute.get_replica_context().all_reduce("SUM", g), grads)

    def apply_kwargs(self) -> Dict[str, bool]:
        """``apply_gradients`` keywords: the sum is already done across replicas."""
        return {"skip_gradients_aggregation": True} if self.strategy.num_replicas_in_sync > 1 else {}

    def mean(self, values: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Per-replica scalars -> their mean over every replica."""
        return {k: self.strategy.reduce("MEAN", v, axis=None) for k, v in values.items()}

    def sum(self, values: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Per-replica sums -> their total over every replica."""
        return {k: self.strategy.reduce("SUM", v, axis=None) for k, v in values.items()}

    def gather(self, values: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Per-example outputs of every worker (one worker: left per replica, concatenated on the host)."""
        if self.num_workers > 1:
            return {k: self.strategy.gather(v, axis=0) for k, v in values.items()}
        return values

    def max_over_workers(self, value: int) -> int:
        """The largest of every worker's ``value`` (an int; one worker: itself). A collective: every worker must
        call it at the same point."""
        if self.num_workers <= 1:
            return int(value)
        if getattr(self, "_max_fn", None) is None:
            self._max_fn = tf.function(lambda v: tf.reduce_max(  # reduce() knows SUM and MEAN only: gather, then max
                self.strategy.gather(self.strategy.run(lambda: v[None]), axis=0)))
        return int(self._max_fn(tf.constant(int(value), tf.int32)))

    def local_results(self, value) -> tuple:
        """This process's per-replica values of a distributed value."""
        return self.strategy.experimental_local_results(value)

    def broadcast(self, variables: Sequence[tf.Variable]) -> None:
        """Same start on every replica: mirrored variables already are."""


class HorovodCollectives(StrategyCollectives):
    """Horovod ranks around the default strategy (UNTESTED here, see the module docstring).

    Gradients are *averaged* over ranks (each rank's loss is its own mean: ``replicas`` is 1),
    as ``hvd.DistributedGradientTape`` does; rank 0's initial state is broadcast once.
    """

    @property
    def replicas(self) -> int:
        return 1

    @property
    def is_chief(self) -> bool:
        return horovod.rank() == 0

    @property
    def num_workers(self) -> int:
        return horovod.size()

    def dataset(self, build):
        return build(horovod.input_context())

    def sum_gradients(self, grads) -> list:
        return map_present(horovod.allreduce_average, grads)

    def apply_kwargs(self) -> Dict[str, bool]:
        return {}

    def mean(self, values):
        return {k: horovod.allreduce_mean(v) for k, v in super().mean(values).items()}

    def sum(self, values):
        return {k: horovod.allreduce_sum(v) for k, v in super().sum(values).items()}

    def gather(self, values):
        return {k: horovod.allgather(v) for k, v in values.items()}

    def max_over_workers(self, value: int) -> int:
        return int(tf.reduce_max(horovod.allgather(tf.constant([int(value)], tf.int32))))

    def broadcast(self, variables: Sequence[tf.Variable]) -> None:
        horovod.broadcast_variables(variables, root_rank=0)


def for_strategy(strategy: tf.distribute.Strategy) -> StrategyCollectives:
    """Horovod's adapter once ``horovod.init()`` ran (``--dist horovod``), else the strategy's."""
    return HorovodCollectives(strategy) if horovod.active() else StrategyCollectives(strategy)
