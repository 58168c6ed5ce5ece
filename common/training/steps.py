"""The training and validation steps of every task: the public step builders.

:class:`TrainStep` is what the trainer runs per batch and what the benchmarks time
(``TrainStep.update``: one full optimizer update on a batch). The per-replica
forward/backward is XLA-compiled when asked; all-reduce, clipping, the update and EMA
run outside XLA (a nested compiled function cannot hold synchronised BatchNorm's
cross-replica all-reduce). Distribution goes through :mod:`common.training.collectives`.
"""
from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf

from common.training import precision as prec
from common.command.config import TrainerConfig
from common.training.optimizers import l2_loss


class TrainStep:
    """One optimizer update per call, or one every ``grad_accum_steps`` calls.

    Args:
      task: the :class:`common.training.task.Task` (its ``train_loss``).
      model, optimizer: what is trained (optimizer possibly loss-scaled).
      config: ``weight_decay``, ``clip_grad_norm`` and ``grad_accum_steps`` are read.
      collectives: a :class:`common.training.collectives.StrategyCollectives`.
      ema: a :class:`common.training.ema.ModelEMA` updated after each update, or None.
      xla: compile the per-replica forward/backward.
    """

    def __init__(self, task, model, optimizer, config: TrainerConfig, collectives, ema=None, xla: bool = False):
        self.task, self.model, self.optimizer, self.config = task, model, optimizer, config
        self.collectives, self.ema = collectives, ema
        self._grads = prec.compile_step(self._replica_gradients, True) if xla else self._replica_gradients
        #: ``update(batch) -> logs``: one full update (the benchmarks' step).
        self.update = tf.function(self._distributed_update)
        self._accumulate = tf.function(self._distributed_accumulate)
        self._apply_accumulated = tf.function(self._distributed_apply_accumulated)
        self._accum = None
        self._calls = 0

    def __call__(self, batch) -> Dict[str, tf.Tensor]:
        """One batch; returns the step's logs (mean over replicas)."""
        if self.config.grad_accum_steps == 1:
            return self.update(batch)
        self._accumulators()
        logs = self._accumulate(batch)
        self._calls += 1
        if self._calls % self.config.grad_accum_steps == 0:
            self._apply_accumulated()
        return logs

    # ------------------------------------------------------------- replica parts
    def _replica_gradients(self, batch):
        """Forward/backward on one replica's batch (the XLA-compiled part).

        Returns:
          ``(grads, logs)``: unscaled gradients of the trainable variables and the task's
          float32 scalar logs plus ``loss``/``total_loss``.
        """
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss, logs = self.task.train_loss(self.model, batch, training=True)
            total = loss + l2_loss(variables, self.config.weight_decay)
            scaled = prec.scale_loss(self.optimizer, total / self.collectives.replicas)
        grads = prec.unscale_gradients(self.optimizer, tape.gradient(scaled, variables))
        return grads, dict(logs, loss=loss, total_loss=total)

    def _clip(self, grads, logs):
        """Clips to ``clip_grad_norm`` (after the cross-replica sum, so the norm is the global one)."""
        if not self.config.clip_grad_norm:
            return grads, logs
        grads, norm = tf.clip_by_global_norm(grads, self.config.clip_grad_norm)
        return grads, dict(logs, grad_norm=norm)

    def _apply(self, grads):
        """Optimizer update with already-aggregated gradients, then EMA."""
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables),
                                       **self.collectives.apply_kwargs())
        if self.ema is not None:
            self.ema.update()

    def _replica_update(self, batch):
        grads, logs = self._grads(batch)
        grads, logs = self._clip(self.collectives.sum_gradients(grads), logs)
        self._apply(grads)
        return logs

    def _distributed_update(self, batch):
        return self.collectives.mean(self.collectives.strategy.run(self._replica_update, args=(batch,)))

    # ------------------------------------------------------ gradient accumulation
    def _accumulators(self):
        """Zero-initialised gradient sums (one per trainable variable), made once."""
        if self._accum is None:
            with self.collectives.strategy.scope():
                self._accum = [tf.Variable(tf.zeros_like(v), trainable=False,
                                           synchronization=tf.VariableSynchronization.ON_READ,
                                           aggregation=tf.VariableAggregation.SUM)
                               for v in self.model.trainable_variables]
        return self._accum

    def _replica_accumulate(self, batch):
        grads, logs = self._clip(*self._grads(batch))  # per micro-batch, local
        scale = 1.0 / self.config.grad_accum_steps
        for acc, grad in zip(self._accum, grads):
            if grad is not None:
                acc.assign_add(tf.cast(grad, acc.dtype) * scale)
        return logs

    def _distributed_accumulate(self, batch):
        return self.collectives.mean(self.collectives.strategy.run(self._replica_accumulate, args=(batch,)))

    def _replica_apply_accumulated(self):
        self._apply(self.collectives.sum_gradients([a.read_value() for a in self._accum]))
        for acc in self._accum:
            acc.assign(tf.zeros_like(acc))

    def _distributed_apply_accumulated(self):
        self.collectives.strategy.run(self._replica_apply_accumulated)


#: ``validation_step`` outputs named ``example.*`` are per-example values (e.g. ``[B]`` true-class
#: probabilities) that ``"sum"`` tasks gather instead of summing (:meth:`Task.observe_examples`).
EXAMPLE_PREFIX = "example."


class EvalStep:
    """One validation batch: per-batch sums (``"sum"`` tasks) or per-example outputs (``"concat"``).

    ``"concat"`` outputs, and the ``example.*`` outputs of ``"sum"`` tasks, stay per replica on one worker
    (see :meth:`local_outputs`) and are all-gathered across workers.
    """

    def __init__(self, task, model, collectives, xla: bool = False):
        self.task, self.collectives = task, collectives
        body = lambda batch: task.validation_step(model, batch)  # noqa: E731
        self._body = prec.compile_step(body, True) if xla else body
        self.concat = getattr(task, "validation_reduction", "sum") == "concat"
        self.run = tf.function(self._distributed)

    def _distributed(self, batch):
        outputs = self.collectives.strategy.run(self._body, args=(batch,))
        if self.concat:
            return self.collectives.gather(outputs)
        examples = {k: v for k, v in outputs.items() if k.startswith(EXAMPLE_PREFIX)}
        sums = self.collectives.sum({k: v for k, v in outputs.items() if k not in examples})
        return {**sums, **self.collectives.gather(examples)}

    def local_outputs(self, outputs):
        """Per-replica ``"concat"`` outputs -> numpy arrays concatenated over this worker's replicas."""
        import numpy as np

        return {k: np.concatenate([np.asarray(x) for x in self.collectives.local_results(v)], axis=0)
                for k, v in outputs.items()}


def optimizer_learning_rate(optimizer) -> Optional[float]:
    """The optimizer's current learning rate (schedules evaluated at its step)."""
    opt = optimizer.inner_optimizer if prec.is_loss_scaled(optimizer) else optimizer
    lr = opt.learning_rate
    if callable(lr) and not isinstance(lr, tf.Variable):
        lr = lr(opt.iterations)
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)
