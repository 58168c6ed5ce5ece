"""``curves.png``: a run's per-epoch losses, validation metrics and learning rate, drawn from its own log.

Reads the DLLogger file (``raport.json``; a resumed run's file already holds each epoch once, see
:meth:`common.io.logger.Logger.drop_after`) and draws up to three panels with matplotlib's headless
``Agg`` backend (no display needed): train/val loss, the primary validation metrics (top-1/top-5 or COCO
bbox/segm AP and AP50), and the learning rate at each epoch's end.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from common.io.logger import read_dllogger

LOSSES = ("train.loss", "val.loss")
METRICS = ("val.top1", "val.top5", "val.bbox/AP", "val.bbox/AP50", "val.segm/AP", "val.segm/AP50")
LR = "train.lr"


def epoch_series(log_file: str) -> Dict[str, Dict[int, float]]:
    """``{key: {epoch: value}}`` of the per-epoch lines (step ``[epoch]``); a later line of an epoch wins."""
    series: Dict[str, Dict[int, float]] = {}
    for record in read_dllogger(log_file):
        step = record.get("step")
        if not (isinstance(step, list) and len(step) == 1 and isinstance(step[0], int)):
            continue
        for key, value in record.get("data", {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(key, {})[step[0]] = float(value)
    return series


def plot_curves(log_file: str, out: str, title: str = "") -> Optional[str]:
    """Writes ``out`` (PNG) from ``log_file``; returns its path, or None when no epoch has finished."""
    series = epoch_series(log_file)
    panels: List[tuple] = [(name, [k for k in keys if k in series]) for name, keys in
                           (("loss", LOSSES), ("validation", METRICS), ("learning rate", (LR,)))]
    panels = [(name, keys) for name, keys in panels if keys]
    if not panels:
        return None
    from common.io import plots

    figure, axes = plots.pyplot().subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for axis, (name, keys) in zip(axes[0], panels):
        for key in keys:
            epochs = sorted(series[key])
            axis.plot(epochs, [series[key][e] for e in epochs], marker="o", markersize=3, label=key)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    return plots.save(figure, out)
