"""Command options: what a mode needs that is not part of the run's configuration (the ``opt.*`` flags).

One frozen dataclass per mode, read by attribute; a family adds the options only its task has by
subclassing one (:meth:`common.command.family.Family.options_class`). Each default is written here once:
``--help`` prints it and the flows read it.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Options:
    """Options of every mode.

    Attributes:
      verbose: show TensorFlow's start-up and debug logs (and tracebacks of user errors).
      config: ``--config NAME=VALUE`` overrides (already applied to the experiment).
      pretrained: ``--pretrained [NAME]``: published weights by name (:mod:`common.weights.registry`;
        ``"default"``: the model's own), downloaded once into the cache.
    """

    verbose: bool = False
    config: Tuple[str, ...] = ()
    pretrained: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class TrainOptions(Options):
    """``train``: ``resume`` continues from a checkpoint folder or a workspace."""

    resume: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class InfoOptions(Options):
    """``info`` has only the common options."""


@dataclasses.dataclass(frozen=True)
class LoadedOptions(Options):
    """Modes that load a trained model.

    Attributes:
      checkpoint: checkpoint folder or prefix (None: ``<workspace>/model_best``, else ``checkpoint-latest``).
      use_ema: the EMA weights of the checkpoint (``--ema-weights``).
      random_weights: run an untrained model when there is no checkpoint (else that is an error).
    """

    checkpoint: Optional[str] = None
    use_ema: bool = False
    random_weights: bool = False


@dataclasses.dataclass(frozen=True)
class EvalOptions(LoadedOptions):
    """``eval``: ``runtime`` (one of ``tf``, ``onnxruntime``; empty: ``tf``, or onnxruntime with ``onnx_file``)."""

    runtime: Tuple[str, ...] = ()
    onnx_file: Optional[str] = None
    tflite_file: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class InferOptions(EvalOptions):
    """``infer``: image files or folders, and where the predictions go (None: ``<workspace>/predictions``)."""

    images: Tuple[str, ...] = ()
    output_dir: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ExportOptions(LoadedOptions):
    """``export``: ``format`` (None: the family's first), where, and the images ``verify`` compares on."""

    export_dir: Optional[str] = None
    format: Optional[str] = None
    opset: Optional[int] = None
    overwrite: bool = False
    verify: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions(Options):
    """``benchmark``: what to time (``kind``), at which batch sizes, how long, under which runtimes."""

    data: Optional[str] = None
    kind: str = "inference"
    batch_sizes: Tuple[int, ...] = (1, 8, 32)
    warmup_steps: int = 3
    iters: int = 20
    table_file: Optional[str] = None
    platform: Optional[str] = None
    runtime: Tuple[str, ...] = ()
    precisions: Tuple[str, ...] = ()


MODE_OPTIONS: Dict[str, type] = {"train": TrainOptions, "eval": EvalOptions, "infer": InferOptions,
                                 "export": ExportOptions, "info": InfoOptions, "benchmark": BenchmarkOptions}


def default_of(options_class: type, name: str):
    """The default of field ``name`` (None when the class has no such field)."""
    fields = {f.name: f for f in dataclasses.fields(options_class)}
    return fields[name].default if name in fields else None


def build(options_class: type, values: Dict[str, object]):
    """``options_class`` from parsed ``opt.*`` values (lists become tuples; unset ones keep their defaults)."""
    return options_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
