"""Timing helpers shared by ``scripts/benchmark_training.py`` and ``scripts/benchmark_inference.py``.

Every step is timed individually with the result materialised on the host
(``.numpy()``), warm-up steps (tracing, XLA compilation, autotuning) are
excluded, and latency percentiles are true quantiles of the per-step times.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def time_steps(step: Callable[[], object], warmup: int, iters: int) -> List[float]:
    """Runs ``step`` ``warmup + iters`` times; returns the last ``iters`` durations (s).

    ``step`` must block until its work is done (e.g. return a numpy value).
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1. Received: iters={iters}")
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def summarize(times: Sequence[float], batch_size: int) -> Dict[str, float]:
    """Throughput (img/s over the total time) and latency quantiles in milliseconds."""
    arr = np.asarray(times, dtype=np.float64)
    row = {"throughput": batch_size * len(arr) / arr.sum(), "latency_mean": 1e3 * arr.mean()}
    for p in PERCENTILES:
        row[f"latency_p{p}"] = float(1e3 * np.percentile(arr, p))
    return row


def format_table(rows: Sequence[Dict[str, object]], columns: Sequence[str]) -> str:
    """Markdown table of ``rows`` restricted to ``columns`` (floats with 2 decimals)."""
    def cell(value):
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
