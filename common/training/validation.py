"""The validation loop of every task: batches -> the task's metrics plus throughput.

``"sum"`` tasks return per-batch sums from ``validation_step`` that are added up here (and may return
per-example ``example.*`` values, handed to ``Task.observe_examples`` as numpy arrays);
``"concat"`` tasks (COCO evaluation) get each batch's per-example numpy outputs through
``update_validation`` and reduce them themselves.
"""
from __future__ import annotations

import math
import time
from typing import Dict, Optional

import numpy as np

from common.io.logger import ProgressBar
from common.training.steps import EXAMPLE_PREFIX, EvalStep
from common.training.timing import StepTimer, timed_iter


def eval_step_limit(config, global_batch: int) -> Optional[int]:
    """Cap on validation batches from ``eval_steps`` and ``eval_samples`` (None: the whole split)."""
    limits = [config.eval_steps]
    if config.eval_samples:
        limits.append(math.ceil(config.eval_samples / global_batch))
    limits = [x for x in limits if x]
    return min(limits) if limits else None


class Validator:
    """Runs the validation split through an :class:`~common.training.steps.EvalStep`."""

    def __init__(self, task, model, config, collectives, xla: bool = False, show_progress: bool = True):
        self.task, self.config, self.collectives = task, config, collectives
        self.step = EvalStep(task, model, collectives, xla=xla)
        self.show_progress = show_progress

    def run(self, global_batch: int, prefix: str) -> Dict[str, float]:
        """``{prefix}.<metric>`` of the task plus ``{prefix}.total_ips``/``compute_ips``/times."""
        dataset = self.collectives.dataset(lambda ctx: self.task.build_eval_dataset(global_batch, ctx))
        totals: Dict[str, float] = {}
        stats = StepTimer()
        limit = eval_step_limit(self.config, global_batch)
        bar = ProgressBar(limit, desc=prefix, unit="img", enabled=self.show_progress)
        self.task.begin_validation()
        for _, batch, data_time in timed_iter(dataset, limit):
            t0 = time.perf_counter()
            count = self._accumulate(self.step.run(batch), totals, global_batch)
            stats.add(count, data_time, time.perf_counter() - t0, 0.0)
            bar.update(1, images=count)
        bar.close()
        if not stats.steps:
            raise ValueError("the validation split produced no batches; check the data or --batch-size")
        metrics = {f"{prefix}.{k}": v for k, v in self.task.reduce_validation(totals).items()}
        timing = stats.summary(prefix)
        timing.pop(f"{prefix}.loss", None)
        return dict(metrics, **timing)

    def _accumulate(self, outputs, totals: Dict[str, float], global_batch: int) -> int:
        """Adds one validation step's outputs; returns the number of images in it."""
        if self.step.concat:
            return int(self.task.update_validation(self.step.local_outputs(outputs)))
        examples = {k: outputs.pop(k) for k in list(outputs) if k.startswith(EXAMPLE_PREFIX)}
        if examples:
            self.task.observe_examples(self.step.local_outputs(examples))
        for k, v in outputs.items():
            value = np.asarray(v, np.float64)
            totals[k] = totals.get(k, 0.0) + (float(value) if value.ndim == 0 else value)  # sums or count arrays
        return int(float(outputs["count"])) if "count" in outputs else global_batch
