"""Per-step timing of the training and validation loops (NVIDIA's throughput metrics)."""
from __future__ import annotations

import threading
import time
from typing import Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf


def timed_iter(dataset, limit: Optional[int]) -> Iterator[Tuple[int, object, float]]:
    """Yields ``(step, batch, seconds waited for the batch)``, at most ``limit`` times.

    ``dataset`` may be an iterator already (then the caller owns it, see :func:`release_in_background`).
    """
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


def release_in_background(box: list) -> threading.Thread:
    """Takes the ``tf.data`` iterator out of ``box`` (a one-item list) and drops it on a daemon thread.

    Tearing down a train iterator whose pipeline has run to its end (parallel ``numpy_function``
    maps, prefetch) took 7-59 s on CPU, all of it on the main thread between two epochs; the next
    epoch's iterator does not depend on it, so the teardown now overlaps with training. The list is
    how the caller gives up its reference: a plain argument would leave one in the caller's frame,
    and whichever reference went last (a race with the thread) did the teardown (the demo stalled
    28-34 s at 5 of 11 epoch ends that way). The caller must hold no other reference.
    """
    holder = box[:]
    box.clear()
    thread = threading.Thread(target=holder.clear, name="tf.data-iterator-teardown", daemon=True)
    thread.start()
    return thread


class StepTimer:
    """Accumulates NVIDIA-style throughput metrics over an epoch and a log window."""

    def __init__(self):
        self.epoch = np.zeros(5)  # images, data_time, compute_time, loss_sum, steps
        self.win = np.zeros(5)

    @property
    def steps(self) -> int:
        return int(self.epoch[4])

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
        """Metrics since the last call (the log window), then a new window."""
        out, self.win = self._metrics(self.win, prefix), np.zeros(5)
        return out

    def summary(self, prefix):
        """Metrics of the whole epoch."""
        return self._metrics(self.epoch, prefix)
