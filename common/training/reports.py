"""What a run writes for people to look at after each validation and epoch (chief only, never stops a run).

``<workspace>/eval/``: the task's per-class tables and pictures (:meth:`Task.write_validation_report`), its per-class numbers also in the log (:meth:`Task.per_class_metrics`);
``<workspace>/curves.png``: the per-epoch curves from the run's own log (:mod:`common.io.curves`); both also
go to TensorBoard as image summaries, with the task's precision-recall curves (:meth:`Task.validation_curves`).
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional

_LOG = logging.getLogger(__name__)


class RunReports:
    """Writes the pictures and tables of a run into ``report_dir`` (``<workspace>/eval``) and its parent.

    Args:
      task: the :class:`common.training.task.Task`.
      logger: the run's :class:`common.io.logger.Logger` (its log file and TensorBoard writer).
      report_dir: ``<workspace>/eval`` (None: nothing is written).
      is_chief: only the chief writes.
    """

    def __init__(self, task, logger, report_dir: Optional[str], is_chief: bool):
        self.task, self.logger, self.report_dir = task, logger, report_dir
        self.enabled = bool(report_dir) and is_chief

    @property
    def workspace(self) -> str:
        return os.path.dirname(self.report_dir)

    def after_validation(self, epoch: Optional[int] = None) -> List[str]:
        """The task's report of the last validation, as files and TensorBoard summaries, and its per-class numbers
        as one ``PER_CLASS`` record of the run's log (``raport.json``; not echoed, not TensorBoard scalars: a
        thousand classes would bury the rest); returns the paths."""
        if not self.enabled:
            return []
        per_class = self.task.per_class_metrics()
        if per_class:
            self.logger.log("PER_CLASS", {"epoch": epoch if epoch is not None else "eval", **per_class}, echo=False)
        try:
            paths = self.task.write_validation_report(self.report_dir)
        except (ImportError, OSError, ValueError) as err:  # a missing matplotlib or a full disk: say so, go on
            _LOG.warning("the validation report was not written to %s: %s", self.report_dir, err)
            return []
        self.logger.pictures(paths, self.workspace)
        self.logger.pr_curves(self.task.validation_curves())
        return paths

    def after_epoch(self) -> Optional[str]:
        """``<workspace>/curves.png`` from the run's log (and as an image summary); returns its path."""
        log_file = getattr(self.logger, "log_file", None)
        if not (self.enabled and log_file and os.path.isfile(log_file)):
            return None
        from common.io.curves import plot_curves

        try:
            path = plot_curves(log_file, os.path.join(self.workspace, "curves.png"), self.task.name)
        except (ImportError, OSError, ValueError) as err:
            _LOG.warning("curves.png not drawn: %s", err)
            return None
        if path:
            self.logger.pictures([path], self.workspace)
        return path
