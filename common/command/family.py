"""What a family (one kind of task) supplies to the one command layer (:mod:`common.command.commands`).

The command layer owns every flow (train, eval, infer, export, info, benchmark): run
set-up, strategy, logger, trainer, checkpoints, ``config.json``, output. Models are
experiments registered by name (:func:`common.command.registry.register_experiment`); a family
supplies only what its task does differently: its experiment type, its extra flags, its
task, model and optimizer builders, and its predictions writer and exporter, for any
experiment of that task. See ``tests/common/test_third_family.py`` for a complete
two-layer example (a third task) and ``tests/common/test_registry.py`` for a third model
of an existing task (one registered function).
"""
from __future__ import annotations

import abc
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from common.command.config import Experiment
from common.command.options import MODE_OPTIONS, ExportOptions, InferOptions


class Family(abc.ABC):
    """Base class of model families (one instance per family, registered by name)."""

    #: family name (logs, errors).
    name: str = "family"
    #: ``--runtime`` values of eval / infer / inference benchmarks.
    runtimes: Tuple[str, ...] = ("tf",)
    #: the family's :class:`~common.command.config.Experiment` subclass.
    experiment_class = Experiment
    #: export formats (the first is the default).
    export_formats: Tuple[str, ...] = ("savedmodel",)

    # ---------------------------------------------------------------- config
    def flags(self, mode: str) -> List[Any]:
        """Family-only :class:`common.command.cli.Flag` entries of ``mode`` (shared ones live in common.command.cli)."""
        return []

    def image_size_value(self, height: int, width: int) -> Any:
        """``--image-size`` as stored in ``data.image_size`` (default: square side)."""
        if height != width:
            raise SystemExit(f"error: {self.name} takes square images; received --image-size {height}x{width}")
        return height

    def options_class(self, mode: str) -> type:
        """The options dataclass of ``mode`` (:mod:`common.command.options`; a family subclasses one to add the
        options only its task has, e.g. ``infer --top-k``)."""
        return MODE_OPTIONS[mode]

    def prepare(self, experiment: Experiment, mode: str) -> Experiment:
        """The experiment as ``mode`` runs it (e.g. plain-TF ops for exports), or SystemExit (one line)
        for a combination the family refuses. Pure: it changes nothing outside the returned config."""
        del mode
        return experiment

    def config_prefix(self) -> str:
        """Where ``--config name=value`` keys that are not experiment sections go."""
        return "task.model."

    # ------------------------------------------------------------ training
    @abc.abstractmethod
    def build_task(self, experiment: Experiment, training: bool) -> Tuple[Any, Experiment]:
        """``(task, resolved experiment)``: the task, and the experiment with what the data
        decided filled in (number of classes, class names, image size)."""

    @abc.abstractmethod
    def build_model(self, experiment: Experiment, task) -> Any:
        """The model to train (under the strategy scope), initial weights loaded."""

    @abc.abstractmethod
    def build_optimizer(self, experiment: Experiment, global_batch: int, steps_per_epoch: int) -> Any:
        """The optimizer with its LR schedule (the command layer adds loss scaling)."""

    def backbone_layers(self, model) -> List[Any]:
        """The layers ``--freeze-backbone``/``--freeze-epochs`` freeze (empty: the family has no such split)."""
        del model
        return []

    def before_training(self, experiment: Experiment, model, task, global_batch: int, logger,
                        resumed: bool) -> None:
        """Hook after the model exists and before the first step (e.g. QAT calibration)."""

    def describe(self, experiment: Experiment) -> Dict[str, Any]:
        """Family facts for the run's ``PARAMETER`` log line."""
        return {}

    # ----------------------------------------------------------- inference
    @abc.abstractmethod
    def load_model(self, experiment: Experiment, checkpoint: Optional[str], use_ema: bool = False) -> Any:
        """The trained model for eval/infer/export (``checkpoint``: a resolved path or None)."""

    @abc.abstractmethod
    def predict(self, experiment: Experiment, model, paths: Sequence[str], out_dir: str,
                options: InferOptions) -> List[Tuple[str, str]]:
        """Runs the model on image files and writes the predictions to ``out_dir`` (``--output-dir``, default
        ``<workspace>/predictions``), printing where.

        Returns:
          ``(path, why)`` of the files that could not be processed (named, skipped; the rest done),
          see :func:`common.io.data_check.for_each_image`.
        """

    @abc.abstractmethod
    def export(self, experiment: Experiment, model, target: str, options: ExportOptions) -> str:
        """Writes the export (``options.format``) to ``target`` (:meth:`export_target`, already checked
        against ``--overwrite``) and verifies it on ``options.verify``."""

    def export_target(self, experiment: Experiment, export_dir: Optional[str], options: ExportOptions) -> str:
        """Where :meth:`export` writes: ``<export_dir or workspace>/model.onnx`` (``.tflite``) for ONNX (TFLite), else the SavedModel
        folder ``export_dir`` (default ``<workspace>/saved_model``)."""
        if options.format in ("onnx", "tflite"):
            return os.path.join(export_dir or experiment.workspace, f"model.{options.format}")
        return export_dir or os.path.join(experiment.workspace, "saved_model")

    @abc.abstractmethod
    def info(self, experiment: Experiment) -> Dict[str, Any]:
        """Model facts printed by ``main.py info``."""

    # ----------------------------------------------------------- benchmark
    def runtime_model(self, experiment: Experiment, model, model_file: Optional[str], runtime: str) -> Any:
        """What eval/infer run under ``runtime`` (one of :attr:`runtimes`): ``model`` itself under ``tf``;
        a family with an exported path returns a stand-in called like the Keras model (``model_file``: the
        ``--onnx-file`` / ``--tflite-file`` to run instead of exporting ``model`` on the fly)."""
        del experiment, model_file, runtime
        return model

    def runtime_benchmark_step(self, experiment: Experiment, batch: int, runtime: str,
                               int8: bool = False) -> Callable[[], Any]:
        """``benchmark --runtime R`` for R other than ``tf``: one inference call of the exported model (``int8``:
        its int8 form; a family without one raises SystemExit with the reason)."""
        raise NotImplementedError(f"{self.name} has no {runtime} benchmark step")

    def check_export(self, experiment: Experiment, options: ExportOptions) -> None:
        """Raises SystemExit (one line) for export options this family cannot honour, before the model is
        loaded (default: all are fine)."""
        del experiment, options

    def check_runtime(self, runtime: str, mode: str, experiment: Optional[Experiment] = None) -> None:
        """Raises SystemExit (one line) before any work when ``runtime`` is not one of
        :meth:`runtimes_of` ``(mode)`` (a family may also refuse it for ``experiment``)."""
        del experiment
        allowed = self.runtimes_of(mode)
        if runtime not in allowed:
            raise SystemExit(f"error: --runtime {runtime} is not available for {self.name} {mode}; run with "
                             f"--runtime {' or '.join(allowed)}")

    def runtimes_of(self, mode: str) -> Tuple[str, ...]:
        """``--runtime`` values of ``mode`` (eval, infer, benchmark): :attr:`runtimes` unless a family says less."""
        del mode
        return self.runtimes

    @abc.abstractmethod
    def benchmark_step(self, experiment: Experiment, kind: str, batch: int) -> Callable[[], Any]:
        """A zero-argument callable running one real ``kind`` (training|inference) step, blocking."""

    def default_benchmark_size(self, experiment: Experiment) -> Any:
        """Image size reported by the benchmark table."""
        return experiment.data.image_size
