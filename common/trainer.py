"""One training/evaluation loop for every :class:`~common.task.Task`.

The trainer owns: the distribution strategy, the optimizer (with loss
scaling for float16), weight decay, EMA, XLA compilation of the steps,
DLLogger metrics, progress output and atomic checkpoints with resume.

Metrics follow NVIDIA's recipe: ``train.loss``, ``train.total_ips``,
``train.compute_ips``, ``train.data_time``, ``train.compute_time``,
``val.loss``/``val.top1``/``val.top5`` (task-defined), ``val.total_ips``,
``val.compute_ips``, ``val.data_time``, ``val.compute_time``.
"""
from __future__ import annotations

import math
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from common import distribution, horovod
from common import precision as prec
from common.checkpoint import CheckpointManager, restore_rng_state, save_rng_state
from common.config import TrainerConfig
from common.logger import ProgressBar
from common.optimizers import l2_loss


class Trainer:
    """Runs ``task`` under ``strategy``; see the module docstring."""

    def __init__(self, task, model, optimizer, config: TrainerConfig, logger, strategy=None,
                 ema=None, workspace: Optional[str] = None, xla: bool = False):
        """``workspace``: where checkpoints go (None: none); ``xla``: compile the replica steps."""
        self.task, self.model, self.optimizer, self.config = task, model, optimizer, config
        self.logger, self.ema = logger, ema
        self.strategy = strategy or tf.distribute.get_strategy()
        self.is_chief = distribution.is_chief(self.strategy)
        with self.strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best_metric")
        # The outer functions run strategy.run; the per-replica bodies are XLA-compiled when asked.
        if config.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1. Received: {config.grad_accum_steps}")
        self.train_step = tf.function(self._distributed_train_step)
        self._accum_step = tf.function(self._distributed_accum_step)
        self._apply_accum = tf.function(self._distributed_apply_accum)
        self._accum = None
        self._steps_done = 0
        self._state_broadcast = False
        self._run_steps = 0
        self._eval_step = tf.function(self._distributed_eval_step)
        # Without XLA the bodies are traced inline: a nested tf.function cannot hold the
        # cross-replica all-reduce of synchronised BatchNorm (merge_call inside it fails).
        self._replica_grads = prec.compile_step(self._replica_gradients, True) if xla else self._replica_gradients
        eval_body = lambda batch: self.task.validation_step(self.model, batch)  # noqa: E731
        self._replica_eval = prec.compile_step(eval_body, True) if xla else eval_body
        self.checkpoints = None
        if workspace:
            self.checkpoints = CheckpointManager(workspace, self._trackables(), is_chief=self.is_chief)

    # ----------------------------------------------------------------- state
    def _trackables(self) -> Dict[str, object]:
        items = {"model": self.model, "optimizer": self.optimizer, "epoch": self.epoch, "best": self.best,
                 "layer_rngs": layer_generators(self.model)}
        if self.ema is not None:
            items["ema"] = self.ema
        items.update(self.task.checkpoint_items())
        return items

    def build_optimizer_state(self):
        """Creates optimizer slots now so that a checkpoint can restore them."""
        opt = self.optimizer.inner_optimizer if prec.is_loss_scaled(self.optimizer) else self.optimizer
        with self.strategy.scope():
            opt.build(self.model.trainable_variables)

    def resume(self, path: str) -> Optional[dict]:
        """Restores model, optimizer (LR step), EMA, epoch, best metric and RNG states."""
        self.build_optimizer_state()
        meta = self.checkpoints.restore(path)
        if meta and meta.get("rng"):
            restore_rng_state(meta["rng"])
        self.logger.log((), {"resumed_from": str(path), "epoch": int(self.epoch.numpy())})
        return meta

    # ----------------------------------------------------------------- steps
    def _replica_gradients(self, batch):
        """Forward/backward on one replica's batch (the XLA-compiled part).

        The loss is the replica's mean divided by the replica count, so the
        *sum* of the replicas' gradients is the gradient of the global-batch
        mean (equal per-replica batches), as on one device.

        Returns:
          ``(grads, logs)``: unscaled gradients of the trainable variables and
          the task's float32 scalar logs plus ``loss``/``total_loss``.
        """
        replicas = self.strategy.num_replicas_in_sync
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss, logs = self.task.train_loss(self.model, batch, training=True)
            total = loss + l2_loss(variables, self.config.weight_decay)
            scaled = prec.scale_loss(self.optimizer, total / replicas)
        grads = prec.unscale_gradients(self.optimizer, tape.gradient(scaled, variables))
        return grads, dict(logs, loss=loss, total_loss=total)

    def _clip(self, grads, logs):
        """Clips to ``clip_grad_norm`` (after the cross-replica sum, so the norm is the global one)."""
        if not self.config.clip_grad_norm:
            return grads, logs
        grads, norm = tf.clip_by_global_norm(grads, self.config.clip_grad_norm)
        return grads, dict(logs, grad_norm=norm)

    def _aggregate(self, grads):
        """Sums the gradients over replicas (Horovod: averages over ranks); ``None`` stays."""
        if horovod.active():
            return horovod.allreduce_gradients(grads)
        if self.strategy.num_replicas_in_sync == 1:
            return grads
        present = [i for i, g in enumerate(grads) if g is not None]
        reduced = tf.distribute.get_replica_context().all_reduce("SUM", [grads[i] for i in present])
        grads = list(grads)
        for i, g in zip(present, reduced):
            grads[i] = g
        return grads

    def _apply(self, grads):
        """Optimizer update with already-aggregated gradients, then EMA."""
        pairs = zip(grads, self.model.trainable_variables)
        if self.strategy.num_replicas_in_sync > 1:
            self.optimizer.apply_gradients(pairs, skip_gradients_aggregation=True)
        else:
            self.optimizer.apply_gradients(pairs)
        if self.ema is not None:
            self.ema.update()

    def _replica_train_step(self, batch):
        """Gradients (XLA), then outside XLA: all-reduce, clipping, update, EMA."""
        grads, logs = self._replica_grads(batch)
        grads, logs = self._clip(self._aggregate(grads), logs)
        self._apply(grads)
        return logs

    # --------------------------------------------------- gradient accumulation
    def _accumulators(self):
        """Zero-initialised gradient sums (one per trainable variable), made once."""
        if self._accum is None:
            with self.strategy.scope():
                self._accum = [tf.Variable(tf.zeros_like(v), trainable=False,
                                           synchronization=tf.VariableSynchronization.ON_READ,
                                           aggregation=tf.VariableAggregation.SUM)
                               for v in self.model.trainable_variables]
        return self._accum

    def _replica_accum_step(self, batch):
        grads, logs = self._clip(*self._replica_grads(batch))  # per micro-batch, local
        scale = 1.0 / self.config.grad_accum_steps
        for acc, grad in zip(self._accum, grads):
            if grad is not None:
                acc.assign_add(tf.cast(grad, acc.dtype) * scale)
        return logs

    def _distributed_accum_step(self, batch):
        return self._reduce_logs(self.strategy.run(self._replica_accum_step, args=(batch,)))

    def _replica_apply_accum(self):
        self._apply(self._aggregate([a.read_value() for a in self._accum]))
        for acc in self._accum:
            acc.assign(tf.zeros_like(acc))

    def _distributed_apply_accum(self):
        self.strategy.run(self._replica_apply_accum)

    def _step(self, batch):
        """One batch: a full update, or (``grad_accum_steps > 1``) accumulate and update every N."""
        if self.config.grad_accum_steps == 1:
            return self.train_step(batch)
        self._accumulators()
        logs = self._accum_step(batch)
        self._steps_done += 1
        if self._steps_done % self.config.grad_accum_steps == 0:
            self._apply_accum()
        return logs

    def _distributed_train_step(self, batch):
        return self._reduce_logs(self.strategy.run(self._replica_train_step, args=(batch,)))

    def _reduce_logs(self, logs):
        """Per-replica scalar logs -> their mean over every replica (and Horovod rank)."""
        logs = {k: self.strategy.reduce("MEAN", v, axis=None) for k, v in logs.items()}
        return {k: horovod.allreduce_mean(v) for k, v in logs.items()} if horovod.active() else logs

    def _distributed_eval_step(self, batch):
        outputs = self.strategy.run(self._replica_eval, args=(batch,))
        if self._concat_validation:
            return self._gather_workers(outputs)
        sums = {k: self.strategy.reduce("SUM", v, axis=None) for k, v in outputs.items()}
        return {k: horovod.allreduce_sum(v) for k, v in sums.items()} if horovod.active() else sums

    def _gather_workers(self, outputs):
        """Concat outputs of every worker (each worker then holds all of them).

        One worker: per-replica tensors, concatenated on the host. Several
        workers (or Horovod ranks): all-gathered along the batch axis.
        """
        if horovod.active():
            return {k: horovod.allgather(v) for k, v in outputs.items()}
        if distribution.num_workers(self.strategy) > 1:
            return {k: self.strategy.gather(v, axis=0) for k, v in outputs.items()}
        return outputs

    @property
    def _concat_validation(self) -> bool:
        return getattr(self.task, "validation_reduction", "sum") == "concat"

    def _local_outputs(self, outputs) -> Dict[str, np.ndarray]:
        """Per-replica validation outputs -> numpy arrays concatenated over replicas."""
        return {k: np.concatenate([np.asarray(x) for x in self.strategy.experimental_local_results(v)], axis=0)
                for k, v in outputs.items()}

    # ----------------------------------------------------------------- loops
    def _dataset(self, build):
        """``build(input_context)`` on one device, per input pipeline, or per Horovod rank.

        With an input context the task batches ``ctx.get_per_replica_batch_size(global_batch)``
        and keeps shard ``ctx.input_pipeline_id`` of ``ctx.num_input_pipelines``.
        """
        if horovod.active():
            return build(horovod.input_context())
        if self.strategy.num_replicas_in_sync > 1:
            return self.strategy.distribute_datasets_from_function(build)
        return build(None)

    def train_epoch(self, epoch: int, global_batch: int) -> Dict[str, float]:
        """One pass over the training data; returns the epoch's train.* metrics."""
        self._broadcast_initial_state()
        dataset = self._dataset(lambda ctx: self.task.build_train_dataset(global_batch, epoch, ctx))
        limit = self._step_limit(global_batch)
        bar = ProgressBar(limit, desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="img",
                          enabled=self.is_chief)
        stats = _Timer()
        for step, batch, data_time in _timed_iter(dataset, limit):
            t0 = time.perf_counter()
            logs = self._step(batch)
            loss = float(logs["loss"])
            self._run_steps += 1
            stats.add(global_batch, data_time, time.perf_counter() - t0, loss,
                      timed=self._run_steps > self.config.log_warmup_steps)
            if not np.isfinite(loss) and not prec.is_loss_scaled(self.optimizer):
                raise FloatingPointError(f"train loss is {loss} at epoch {epoch + 1} step {step + 1}; "
                                         "lower --lr or check the data")
            bar.update(1, images=global_batch, loss=loss)
            if (step + 1) % self.config.log_every == 0:
                self.logger.log((epoch + 1, step + 1), dict(stats.window("train"), **{"train.lr": self._lr()}))
        bar.close()
        return stats.summary("train")

    def evaluate(self, global_batch: int, epoch: Optional[int] = None) -> Dict[str, float]:
        """Validation pass (with EMA weights as ``val.ema.*`` too when EMA is on)."""
        metrics = self._evaluate_once(global_batch, "val")
        if self.ema is not None:
            with self.ema.swapped():
                metrics.update(self._evaluate_once(global_batch, "val.ema"))
        step = (epoch + 1,) if epoch is not None else ()
        self.logger.log(step, metrics)
        return metrics

    def _evaluate_once(self, global_batch: int, prefix: str) -> Dict[str, float]:
        dataset = self._dataset(lambda ctx: self.task.build_eval_dataset(global_batch, ctx))
        totals: Dict[str, float] = {}
        stats = _Timer()
        limit = self._eval_limit(global_batch)
        bar = ProgressBar(limit, desc=prefix, unit="img", enabled=self.is_chief)
        if self._concat_validation:
            self.task.begin_validation()
        for _, batch, data_time in _timed_iter(dataset, limit):
            t0 = time.perf_counter()
            count = self._accumulate(self._eval_step(batch), totals, global_batch)
            stats.add(count, data_time, time.perf_counter() - t0, 0.0)
            bar.update(1, images=count)
        bar.close()
        if not stats.epoch[4]:
            raise ValueError("the validation split produced no batches; check the data or --batch-size")
        metrics = {f"{prefix}.{k}": v for k, v in self.task.reduce_validation(totals).items()}
        timing = stats.summary(prefix)
        timing.pop(f"{prefix}.loss", None)
        return dict(metrics, **timing)

    def _accumulate(self, outputs, totals: Dict[str, float], global_batch: int) -> int:
        """Adds one validation step's outputs; returns the number of images in it."""
        if self._concat_validation:
            return int(self.task.update_validation(self._local_outputs(outputs)))
        for k, v in outputs.items():
            totals[k] = totals.get(k, 0.0) + float(v)
        return int(float(outputs["count"])) if "count" in outputs else global_batch

    def fit(self, global_batch: int, eval_batch: Optional[int] = None) -> Dict[str, float]:
        """Trains from ``self.epoch`` to ``config.epochs``; evaluates and checkpoints each epoch."""
        final: Dict[str, float] = {}
        for epoch in range(int(self.epoch.numpy()), self.config.epochs):
            final = self.train_epoch(epoch, global_batch)
            if self._evaluates_after(epoch):
                final.update(self.evaluate(eval_batch or global_batch, epoch))
            self.epoch.assign(epoch + 1)
            self.logger.log((epoch + 1,), {k: v for k, v in final.items() if k.startswith("train.")})
            self._checkpoint(final)
        self.logger.log((), final)
        self.logger.flush()
        return final

    # ----------------------------------------------------------------- helpers
    def _broadcast_initial_state(self):
        """Horovod: rank 0's model, optimizer slots, EMA and counters to every rank (once).

        Done before the first step (slots are built first), so every rank starts
        from the same state, as ``hvd.callbacks.BroadcastGlobalVariablesCallback(0)``.
        """
        if not horovod.active() or self._state_broadcast:
            return
        variables = list(self.model.variables) + [self.epoch, self.best]
        if self.optimizer is not None:
            self.build_optimizer_state()
            variables += list(self.optimizer.variables)
        if self.ema is not None:
            variables += list(self.ema.shadow)
        horovod.broadcast_variables(variables, root_rank=0)
        self._state_broadcast = True

    def _evaluates_after(self, epoch: int) -> bool:
        """Validation after ``epoch`` (0-based): every ``eval_every`` epochs, else after the last."""
        if not self.config.evaluate:
            return False
        every = self.config.eval_every
        return (epoch + 1) % every == 0 if every else epoch + 1 == self.config.epochs

    def _eval_limit(self, global_batch: int) -> Optional[int]:
        """Cap on validation batches from ``eval_steps`` and ``eval_samples``."""
        limits = [self.config.eval_steps]
        if self.config.eval_samples:
            limits.append(math.ceil(self.config.eval_samples / global_batch))
        limits = [x for x in limits if x]
        return min(limits) if limits else None

    def _checkpoint(self, metrics: Dict[str, float]):
        if not (self.config.save_checkpoints and self.checkpoints):
            return
        key = f"val.{self.config.best_metric}"
        value = metrics.get(key)
        is_best = value is not None and value > float(self.best.numpy())
        if is_best:
            self.best.assign(value)
        if horovod.active() and not self.is_chief:
            return  # rank 0 writes; Horovod variables are local, no collective needed
        meta = {"epoch": int(self.epoch.numpy()), "metrics": metrics, "rng": save_rng_state(),
                "task": self.task.name}
        self.checkpoints.save_latest(meta)
        if is_best:
            self.checkpoints.save_best(meta)

    def _step_limit(self, global_batch: int) -> Optional[int]:
        limits = [x for x in (self.config.steps_per_epoch, self.config.prof,
                              self.task.steps_per_epoch(global_batch)) if x]
        return min(limits) if limits else None

    def _lr(self) -> float:
        opt = self.optimizer.inner_optimizer if prec.is_loss_scaled(self.optimizer) else self.optimizer
        lr = opt.learning_rate
        if callable(lr) and not isinstance(lr, tf.Variable):
            lr = lr(opt.iterations)
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)


def layer_generators(model) -> list:
    """``tf.random.Generator`` of every random layer (Dropout, stochastic depth).

    Keras keeps these out of checkpoints on purpose; the trainer saves them so
    that a resumed run draws the same dropout masks as an uninterrupted one.
    """
    generators = []
    for layer in model.submodules:
        generator = getattr(getattr(layer, "_random_generator", None), "_generator", None)
        if isinstance(generator, tf.random.Generator):
            generators.append(generator)
    return generators


def _timed_iter(dataset, limit: Optional[int]):
    """Yields ``(step, batch, seconds waited for the batch)``, at most ``limit`` times."""
    iterator = iter(dataset)
    step = 0
    while limit is None or step < limit:
        t0 = time.perf_counter()
        try:
            batch = next(iterator)
        except (StopIteration, tf.errors.OutOfRangeError):
            return
        yield step, batch, time.perf_counter() - t0
        step += 1


class _Timer:
    """Accumulates NVIDIA-style throughput metrics over an epoch and a log window."""

    def __init__(self):
        self.epoch = np.zeros(5)  # images, data_time, compute_time, loss_sum, steps
        self.win = np.zeros(5)

    def add(self, images, data_time, compute_time, loss, timed: bool = True):
        """Adds a step; untimed (warm-up) steps count for the loss only."""
        row = np.array([images, data_time, compute_time, loss, 1.0]) if timed else \
            np.array([0.0, 0.0, 0.0, loss, 1.0])
        self.epoch += row
        self.win += row

    @staticmethod
    def _metrics(acc, prefix):
        images, data_t, compute_t, loss_sum, steps = acc
        steps = max(steps, 1.0)
        return {f"{prefix}.loss": loss_sum / steps,
                f"{prefix}.total_ips": images / max(data_t + compute_t, 1e-9),
                f"{prefix}.compute_ips": images / max(compute_t, 1e-9),
                f"{prefix}.data_time": data_t / steps,
                f"{prefix}.compute_time": compute_t / steps}

    def window(self, prefix):
        out, self.win = self._metrics(self.win, prefix), np.zeros(5)
        return out

    def summary(self, prefix):
        return self._metrics(self.epoch, prefix)
