"""``--early-stop-patience N``: stop a run whose primary validation metric stopped improving.

Counted in evaluations (epochs with the default ``--eval-every 1``), as Keras's ``EarlyStopping`` counts
epochs; higher is better (top-1, bbox AP). ``model_best`` already holds the best epoch's weights, so a stop
loses nothing; a resumed run continues the count from ``model_best``'s epoch.
"""
from __future__ import annotations

from typing import Dict, Optional


class EarlyStopping:
    """Tracks the best value of ``metric`` and the evaluations since it.

    Args:
      patience: evaluations without improvement that stop the run (>= 1).
      metric: the logged key, e.g. ``val.top1``.
    """

    def __init__(self, patience: int, metric: str):
        self.patience, self.metric = int(patience), metric
        self.best: Optional[float] = None
        self.best_epoch = 0
        self.waited = 0

    def restore(self, best: Optional[float], best_epoch: int, last_epoch: int, eval_every: int = 1) -> None:
        """A resumed run: the best so far (``model_best``) and how many evaluations ago it was."""
        if best is not None:
            self.best, self.best_epoch = float(best), int(best_epoch)
            self.waited = max(last_epoch - best_epoch, 0) // max(eval_every, 1)

    def update(self, epoch: int, metrics: Dict[str, float]) -> Optional[str]:
        """After epoch ``epoch`` (1-based): None to go on, else why the run stops (one line)."""
        value = metrics.get(self.metric)
        if value is None:
            return None
        if self.best is None or value > self.best:
            self.best, self.best_epoch, self.waited = float(value), epoch, 0
            return None
        self.waited += 1
        if self.waited < self.patience:
            return None
        return (f"stopped early after epoch {epoch}: {self.metric} did not improve for {self.waited} evaluation(s) "
                f"(best {self.best:.4g} at epoch {self.best_epoch}, kept in model_best)")
