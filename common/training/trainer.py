"""One training loop for every :class:`~common.training.task.Task`.

The trainer owns the epochs: data per epoch, progress output, DLLogger metrics, the
validation schedule, checkpoints with exact resume. What runs per batch is a
:class:`common.training.steps.TrainStep` (``trainer.train_step`` is its public one-update step,
what the benchmarks time); validation is a :class:`common.training.validation.Validator`;
distribution goes through :mod:`common.training.collectives` (tf.distribute or Horovod).

Metrics follow NVIDIA's recipe: ``train.loss``, ``train.total_ips``,
``train.compute_ips``, ``train.data_time``, ``train.compute_time``,
``val.loss``/``val.top1``/``val.top5`` (task-defined), ``val.total_ips``,
``val.compute_ips``, ``val.data_time``, ``val.compute_time``.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from common.training import collectives as collectives_lib
from common.training import precision as prec
from common.training.early_stop import EarlyStopping
from common.training.checkpoint import BEST, CheckpointManager, read_meta, restore_rng_state, save_rng_state
from common.command.config import TrainerConfig
from common.command.errors import DivergedError, Interrupted
from common.training.interrupt import StopRequest
from common.training.reports import RunReports
from common.io.logger import ProgressBar
from common.training.steps import TrainStep, optimizer_learning_rate
from common.training.timing import StepTimer, release_in_background, timed_iter
from common.training.validation import Validator

_log = logging.getLogger(__name__)

__all__ = ["Trainer", "TrainerConfig", "layer_generators"]


class Trainer:
    """Runs ``task`` under ``strategy``; see the module docstring.

    Args:
      task, model, optimizer: what is trained (``optimizer`` None: evaluation only).
      config: a :class:`common.command.config.TrainerConfig`.
      logger: a :class:`common.io.logger.Logger` (or ``NullLogger``).
      strategy: a ``tf.distribute.Strategy`` (default: the current one).
      ema: a :class:`common.training.ema.ModelEMA`, evaluated as ``val.ema.*`` and checkpointed.
      workspace: where checkpoints go (None: none).
      xla: compile the per-replica steps.
      backbone_layers: what ``--freeze-backbone`` / ``--freeze-epochs`` freeze.
      report_dir: where the task writes each validation's detailed results (default ``<workspace>/eval``).
    """

    def __init__(self, task, model, optimizer, config: TrainerConfig, logger, strategy=None,
                 ema=None, workspace: Optional[str] = None, xla: bool = False, backbone_layers=(),
                 report_dir: Optional[str] = None):
        self.task, self.model, self.optimizer, self.config = task, model, optimizer, config
        self._xla, self._backbone_layers, self._frozen = xla, list(backbone_layers), None
        self.report_dir = report_dir if report_dir is not None else (os.path.join(workspace, "eval") if workspace
                                                                      else None)
        self.logger, self.ema = logger, ema
        self.strategy = strategy or tf.distribute.get_strategy()
        self.collectives = collectives_lib.for_strategy(self.strategy)
        self.is_chief = self.collectives.is_chief
        with self.strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best_metric")
        self.steps = TrainStep(task, model, optimizer, config, self.collectives, ema=ema, xla=xla)
        self.train_step = self.steps.update
        self.validator = Validator(task, model, config, self.collectives, xla=xla, show_progress=self.is_chief)
        self._run_steps = 0
        self._state_broadcast = False
        self._start_step = 0  # steps of the current epoch done before a mid-epoch resume
        self._stop = StopRequest()
        self._last_save = time.monotonic()
        self.checkpoints = CheckpointManager(workspace, self._trackables(), is_chief=self.is_chief) \
            if workspace else None
        self.reports = RunReports(task, logger, self.report_dir, self.is_chief)
        if optimizer is not None and hasattr(logger, "global_step"):
            logger.global_step = lambda: int(optimizer.iterations.numpy())  # TensorBoard's x axis
        self.early_stop = EarlyStopping(config.early_stop_patience, f"val.{config.best_metric}") \
            if config.early_stop_patience else None

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
        self._start_step = int((meta or {}).get("step", 0))
        self._adopt_saved_best()
        epoch = int(self.epoch.numpy())
        self.logger.drop_after(epoch)  # the lines of epochs that are about to be redone
        self.logger.log((), {"resumed_from": str(path), "epoch": epoch, "step": self._start_step})
        return meta

    def _adopt_saved_best(self):
        """A ``model_best`` newer than the restored state (killed before ``checkpoint-latest``) stays the best."""
        if not self.checkpoints or not os.path.isdir(os.path.join(self.checkpoints.workspace, BEST)):
            return
        saved = read_meta(os.path.join(self.checkpoints.workspace, BEST)).get("metrics", {})
        value = saved.get(f"val.{self.config.best_metric}")
        if value is not None and value > float(self.best.numpy()):
            self.best.assign(value)
        if self.early_stop and value is not None:
            best_epoch = int(read_meta(os.path.join(self.checkpoints.workspace, BEST)).get("epoch", 0))
            self.early_stop.restore(value, best_epoch, int(self.epoch.numpy()), self.config.eval_every or 1)

    # ----------------------------------------------------------------- loops
    def fit(self, global_batch: int, eval_batch: Optional[int] = None) -> Dict[str, float]:
        """Trains from ``self.epoch`` to ``config.epochs``; validates and checkpoints on schedule."""
        final: Dict[str, float] = {}
        with self._stop:
            for epoch in range(int(self.epoch.numpy()), self.config.epochs):
                final = self._epoch(epoch, global_batch, eval_batch)
                if self._stops_early(epoch + 1, final):
                    break
        self.logger.log((), final)
        self.logger.flush()
        return final

    def _stops_early(self, epoch: int, metrics: Dict[str, float]) -> bool:
        """``--early-stop-patience``: logs and returns True when the primary metric stopped improving."""
        reason = self.early_stop.update(epoch, metrics) if self.early_stop else None
        if reason:
            self.logger.log((), {"early_stop_epoch": epoch, "best_epoch": self.early_stop.best_epoch})
            if self.is_chief:
                print(reason, flush=True)
        return bool(reason)

    def _epoch(self, epoch: int, global_batch: int, eval_batch: Optional[int]) -> Dict[str, float]:
        """Trains (from a mid-epoch resume's step), validates, checks, checkpoints one epoch."""
        start, self._start_step = self._start_step, 0
        self._freeze_for(epoch)
        final = self.train_epoch(epoch, global_batch, start_step=start)
        if self._evaluates_after(epoch):
            final.update(self.evaluate(eval_batch or global_batch, epoch))
        self._stop_if_diverged(epoch, final)
        self.epoch.assign(epoch + 1)
        self.logger.log((epoch + 1,), {k: v for k, v in final.items() if k.startswith("train.")})
        self.reports.after_epoch()
        self._checkpoint(final)
        return final

    def _freeze_for(self, epoch: int) -> None:
        """``--freeze-backbone`` / ``--freeze-epochs``: the backbone's layers frozen (not trainable: BatchNorm in
        inference mode) while ``epoch`` is in the frozen part; the step is rebuilt when that changes. The optimizer's
        state covers every variable first, so checkpoints hold the same slots frozen or not."""
        config = self.config
        frozen = config.freeze_backbone or epoch < config.freeze_epochs
        if not self._backbone_layers or frozen == self._frozen:
            return
        if self.optimizer is not None:
            self.build_optimizer_state()
        for layer in self._backbone_layers:
            layer.trainable = not frozen
        self._frozen = frozen
        self.steps = TrainStep(self.task, self.model, self.optimizer, config, self.collectives, ema=self.ema,
                               xla=self._xla)
        self.train_step = self.steps.update
        trainable = int(sum(np.prod(v.shape) for v in self.model.trainable_variables))
        self.logger.log("PARAMETER", {"backbone_frozen": frozen, "from_epoch": epoch, "trainable_params": trainable})

    def train_epoch(self, epoch: int, global_batch: int, start_step: int = 0) -> Dict[str, float]:
        """One pass over the training data (from batch ``start_step``: a mid-epoch resume skips the batches the
        interrupted run trained on, so the rest is what it would have seen); returns the epoch's train.* metrics."""
        self._broadcast_initial_state()

        def epoch_data(ctx):
            data = self.task.build_train_dataset(global_batch, epoch, ctx)
            return data.skip(start_step) if start_step else data

        dataset = self.collectives.dataset(epoch_data)
        limit = self._step_limit(global_batch)
        limit = None if limit is None else max(limit - start_step, 0)
        bar = ProgressBar(limit, desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="img",
                          enabled=self.is_chief)
        stats = StepTimer()
        box = [iter(dataset)]  # the only reference to the iterator (see timing.release_in_background)
        for step, batch, data_time in timed_iter(box[0], limit):
            t0 = time.perf_counter()
            loss = float(self.steps(batch)["loss"])
            self._run_steps += 1
            stats.add(global_batch, data_time, time.perf_counter() - t0, loss,
                      timed=self._run_steps > self.config.log_warmup_steps)
            if not np.isfinite(loss) and not prec.is_loss_scaled(self.optimizer):  # loss scaling skips the step
                raise DivergedError(self._diverged(f"train.loss is {loss} at epoch {epoch + 1} step {step + 1}",
                                                   epoch))
            bar.update(1, images=global_batch, loss=loss)
            if (start_step + step + 1) % self.config.log_every == 0:
                self.logger.log((epoch + 1, start_step + step + 1),
                                dict(stats.window("train"), **{"train.lr": optimizer_learning_rate(self.optimizer)}))
            self._save_mid_epoch(epoch, start_step + step + 1, bar)
        bar.close()
        del dataset
        release_in_background(box)  # its teardown can take a minute (timing.release_in_background)
        return {**stats.summary("train"), **self.task.epoch_metrics(),
                "train.lr": optimizer_learning_rate(self.optimizer)}

    def evaluate(self, global_batch: int, epoch: Optional[int] = None) -> Dict[str, float]:
        """Validation pass (with EMA weights as ``val.ema.*`` too when EMA is on)."""
        metrics = self.validator.run(global_batch, "val")
        self.reports.after_validation(None if epoch is None else epoch + 1)
        if self.ema is not None:
            with self.ema.swapped():
                metrics.update(self.validator.run(global_batch, "val.ema"))
        self.logger.log((epoch + 1,) if epoch is not None else (), metrics)
        return metrics

    # ----------------------------------------------------------------- helpers
    def _broadcast_initial_state(self):
        """Rank 0's model, optimizer slots, EMA and counters to every rank, once (Horovod).

        Done before the first step (slots are built first), as
        ``hvd.callbacks.BroadcastGlobalVariablesCallback(0)``; a no-op for tf.distribute.
        """
        if self._state_broadcast or not isinstance(self.collectives, collectives_lib.HorovodCollectives):
            return
        variables = list(self.model.variables) + [self.epoch, self.best]
        if self.optimizer is not None:
            self.build_optimizer_state()
            variables += list(self.optimizer.variables)
        if self.ema is not None:
            variables += list(self.ema.shadow)
        self.collectives.broadcast(variables)
        self._state_broadcast = True

    def _evaluates_after(self, epoch: int) -> bool:
        """Validation after ``epoch`` (0-based): every ``eval_every`` epochs, and after the last whatever the
        cadence (``--epochs 10`` with ``eval_every`` 4 validates after 4, 8 and 10)."""
        if not self.config.evaluate:
            return False
        every, done = self.config.eval_every, epoch + 1
        return done == self.config.epochs or bool(every) and done % every == 0

    def _save_mid_epoch(self, epoch: int, step: int, bar) -> None:
        """After training step ``step`` (1-based) of ``epoch``: a stop signal saves and ends the run; the save
        interval (``save_every_steps`` / ``save_every_minutes``) saves and goes on. Several workers act on any
        worker's signal at the same step (:meth:`_agreed_stop`), the chief saving it."""
        signum = self._agreed_stop()
        if signum:
            bar.close()
            saved = self._save_step(epoch, step)
            where = f"saved at epoch {epoch + 1} step {step} in {self.checkpoints.workspace}/checkpoint-latest; " \
                    f"resume with the same command and --resume {self.checkpoints.workspace}" if saved else \
                "nothing saved (--no-checkpoints)"
            name = self._stop.name or f"{signal.Signals(signum).name} (to another worker)"
            raise Interrupted(f"{name}: {where}", 128 + signum)
        every, minutes = self.config.save_every_steps, self.config.save_every_minutes
        if (every and self._run_steps % every == 0) or \
                (minutes and time.monotonic() - self._last_save >= 60 * minutes):
            self._save_step(epoch, step)

    def _agreed_stop(self) -> int:
        """The stop signal to act on after this step (0: none): this process's, or with several workers the
        largest any worker received, agreed by one all-reduce per step so every worker stops (and takes part in
        the chief's save) at the same step."""
        return self.collectives.max_over_workers(self._stop.signum or 0)

    def _save_step(self, epoch: int, step: int) -> bool:
        """``checkpoint-latest`` in the middle of ``epoch`` after ``step`` steps (the meta's ``step``); False if
        this run writes no checkpoints."""
        if not (self.config.save_checkpoints and self.checkpoints):
            return False
        self._last_save = time.monotonic()
        if isinstance(self.collectives, collectives_lib.HorovodCollectives) and not self.is_chief:
            return True
        self.checkpoints.save_latest({"epoch": epoch, "step": step, "metrics": {}, "rng": save_rng_state(),
                                      "task": self.task.name})
        return True

    def _stop_if_diverged(self, epoch: int, metrics: Dict[str, float]) -> None:
        """A non-finite epoch loss or validation metric ends the run before the epoch is saved (never
        ``model_best``; ``checkpoint-latest`` keeps the last finite epoch)."""
        bad = {k: v for k, v in metrics.items() if (k.startswith("val.") or k == "train.loss")
               and isinstance(v, (int, float)) and not np.isfinite(v)}
        if bad:
            what = ", ".join(f"{k} {v}" for k, v in sorted(bad.items()))
            raise DivergedError(self._diverged(f"{what} after epoch {epoch + 1}", epoch))

    def _diverged(self, what: str, epoch: int) -> str:
        """The one line of a diverged run: what, what was kept, what to do."""
        if epoch and self.checkpoints and self.config.save_checkpoints:
            then = f"the checkpoints keep epoch {epoch}): lower --lr or add --clip-grad-norm, and --resume " \
                   f"{self.checkpoints.workspace}"
        else:
            then = "nothing was saved): lower --lr or add --clip-grad-norm, and train again"
        return f"the run diverged: {what}; this epoch was not saved ({then}"

    def _checkpoint(self, metrics: Dict[str, float]):
        if not (self.config.save_checkpoints and self.checkpoints):
            return
        value = metrics.get(f"val.{self.config.best_metric}")
        is_best = value is not None and value > float(self.best.numpy())
        if is_best:
            self.best.assign(value)
        self._last_save = time.monotonic()
        if isinstance(self.collectives, collectives_lib.HorovodCollectives) and not self.is_chief:
            return  # rank 0 writes; Horovod variables are local, no collective needed
        meta = {"epoch": int(self.epoch.numpy()), "metrics": metrics, "rng": save_rng_state(),
                "task": self.task.name}
        # model_best first: a kill before checkpoint-latest is written redoes this epoch on resume
        # (and so rewrites the best copy); the other order could leave a latest state that already
        # counts this epoch as the best while model_best still holds an older one.
        if is_best:
            self.checkpoints.save_best(meta)
        self.checkpoints.save_latest(meta)

    def _step_limit(self, global_batch: int) -> Optional[int]:
        limits = [x for x in (self.config.steps_per_epoch, self.config.prof,
                              self.task.steps_per_epoch(global_batch)) if x]
        return min(limits) if limits else None


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
