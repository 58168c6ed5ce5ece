"""Experiment configuration: frozen dataclasses, dotted overrides, ``config.json``.

An experiment is one nested frozen dataclass (Model Garden style)::

    Experiment
      model       registered model name ("efficientnet-b0", "mask-rcnn", ...)
      workspace   checkpoints, logs, config.json and exports
      runtime     RuntimeConfig: precision, XLA, distribution, seed, logging
      trainer     TrainerConfig: epochs, batch sizes, evaluation, checkpoints, logging cadence
      data        DataConfig: where the data is, image size, classes (a family's subclass)
      task        TaskConfig: optimizer and learning rate (a family's subclass; ``task.model``
                  is the architecture config)

Each family subclasses :class:`Experiment` with subclasses of :class:`DataConfig` and
:class:`TaskConfig`, so every shared flag has its field in every family.
The command line is parsed once (:mod:`common.command.cli`) and applied last, by dotted name,
with :func:`replace_flat`; nothing below the command layer sees argparse.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

CONFIG_FILE = "config.json"
PRECISIONS = ("FP32", "TF32", "AMP", "BF16")
OPENVINO_PRECISIONS = ("f32", "bf16", "f16")  # --openvino-precision (common.io.openvino_runtime)


def check(condition: bool, message: str) -> None:
    """Raises ``ValueError(message)`` unless ``condition``."""
    if not condition:
        raise ValueError(message)


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Process-wide settings of a run (every mode).

    Attributes:
      precision: ``TF32`` (float32, TensorFloat-32 math allowed: TensorFlow's default) | ``FP32``
        (strict float32) | ``AMP`` (mixed float16, loss scaling) | ``BF16`` (mixed bfloat16).
      tf32: allow TensorFloat-32 math on Ampere+ GPUs (``--no-tf32`` turns it off).
      static_loss_scale: fixed loss scale for AMP (None: dynamic).
      xla: compile the steps with XLA.
      seed: seed of Python, NumPy, TensorFlow and the data order.
      dist: distribution strategy kind (:data:`common.training.distribution.STRATEGIES`).
      gpus: NVIDIA's ``--gpus N``: mirrored over the first N GPUs (None: ``dist`` decides).
      eagerly: run tf.functions eagerly (debugging).
      deterministic: TensorFlow op determinism (``tf.config.experimental.enable_op_determinism``):
        the same seed gives the same run (Mask R-CNN on CPU diverges after ~10-50 steps without it).
      log_file: DLLogger JSON-lines file (None: ``<workspace>/raport.json``).
      log_tensorboard: where TensorBoard summaries go (None: ``<workspace>/tensorboard``).
      tensorboard: write TensorBoard summaries at all (``--no-tensorboard``: False).
      max_image_pixels: pixel budget of every image decode (:mod:`common.io.pixel_budget`).
      openvino_precision: float arithmetic of ``--runtime openvino`` (:data:`OPENVINO_PRECISIONS`): ``f32`` (the
        same probabilities as TensorFlow to ~1e-6), or the plugin's faster ``bf16`` (CPUs with AVX512-BF16 or AMX;
        probabilities move by ~1e-2) or ``f16``.
    """

    precision: str = "TF32"
    tf32: bool = True
    static_loss_scale: Optional[float] = None
    xla: bool = False
    seed: int = 0
    dist: str = "auto"
    gpus: Optional[int] = None
    eagerly: bool = False
    deterministic: bool = False
    log_file: Optional[str] = None
    log_tensorboard: Optional[str] = None
    tensorboard: bool = True
    max_image_pixels: int = 100_000_000
    openvino_precision: str = "f32"

    def __post_init__(self):
        check(self.precision in PRECISIONS,
              f"precision must be one of {PRECISIONS}. Received: precision={self.precision!r}")
        check(self.openvino_precision in OPENVINO_PRECISIONS, f"openvino_precision must be one of "
              f"{OPENVINO_PRECISIONS}. Received: openvino_precision={self.openvino_precision!r}")
        check(self.gpus is None or self.gpus >= 1, f"--gpus must be >= 1. Received: {self.gpus}")


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Loop settings (every family; see :class:`common.training.trainer.Trainer`).

    Attributes:
      epochs: total epochs of the run (a resumed run continues to this).
      steps_per_epoch: cap on steps per epoch (None: the whole training split).
      batch_size: training images per replica (the global batch is this times the replicas).
      eval_batch_size: validation images per replica (None: ``batch_size``).
      eval_steps: cap on validation batches (None: the whole split).
      eval_samples: cap on validated images (None: all).
      evaluate: validate during/after training (``--no-eval`` turns it off).
      eval_every: epochs between validations (None: once, after the last epoch).
      best_metric: validation metric that selects ``model_best`` (higher is better).
      weight_decay: L2 coefficient on kernels (not BN/bias).
      grad_accum_steps: batches whose gradients are averaged into one update.
      clip_grad_norm: clip gradients to this global norm (None: no clipping).
      prof: NVIDIA's ``--prof N``: stop each epoch after N steps (benchmarks).
      log_every: iterations between DLLogger iteration lines.
      log_warmup_steps: first steps of the run left out of throughput figures.
      save_checkpoints: ``False`` for ``--no-checkpoints``.
      use_ema: keep an exponential moving average of the weights (evaluated and checkpointed).
      ema_decay: its decay.
      save_every_steps: also write ``checkpoint-latest`` every this many steps (None: not by count).
      save_every_minutes: also write it when this many minutes passed since the last save (mid-epoch
        included: a preempted or killed run loses at most this much; None or 0: only at epoch ends).
      freeze_backbone: train only what follows the backbone (its BatchNorms in inference mode, as the Keras
        transfer-learning guide does) for the whole run.
      freeze_epochs: freeze the backbone for the first this many epochs, then train everything.
      early_stop_patience: stop after this many evaluations without a better ``best_metric`` (None: never).
    """

    epochs: int = 1
    steps_per_epoch: Optional[int] = None
    batch_size: int = 32
    eval_batch_size: Optional[int] = None
    eval_steps: Optional[int] = None
    eval_samples: Optional[int] = None
    evaluate: bool = True
    eval_every: Optional[int] = 1
    best_metric: str = "top1"
    weight_decay: float = 0.0
    grad_accum_steps: int = 1
    clip_grad_norm: Optional[float] = None
    prof: Optional[int] = None
    log_every: int = 20
    log_warmup_steps: int = 0
    save_checkpoints: bool = True
    use_ema: bool = False
    ema_decay: float = 0.9999
    save_every_steps: Optional[int] = None
    save_every_minutes: Optional[float] = 30.0
    freeze_backbone: bool = False
    freeze_epochs: int = 0
    early_stop_patience: Optional[int] = None

    def __post_init__(self):
        check(isinstance(self.freeze_epochs, int) and self.freeze_epochs >= 0,
              f"--freeze-epochs must be an integer >= 0. Received: {self.freeze_epochs!r}")
        for name in ("epochs", "batch_size", "grad_accum_steps", "log_every"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 1, f"{name} must be an integer >= 1. Received: {value!r}")
        for name in ("steps_per_epoch", "eval_batch_size", "eval_steps", "eval_samples", "prof", "eval_every",
                     "save_every_steps", "early_stop_patience"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{name} must be >= 1 (or unset). Received: {value!r}")

    @property
    def validation_batch_size(self) -> int:
        """Per-replica validation batch."""
        return self.eval_batch_size or self.batch_size


OPTIMIZERS = ("sgd", "rmsprop", "adam")
#: ``cosine`` / ``linear``: warm-up from 0, then decay to 0 (the boundaries and values are not used);
#: ``piecewise``: warm-up from ``warmup_init_lr``,
#: ``lr`` until the first of ``lr_boundaries``, then each of ``lr_values``; ``step``: the same with each value
#: a tenth of the one before (``lr_values`` unset).
LR_SCHEDULES = ("cosine", "linear", "piecewise", "step")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What every task's data config has (families subclass it; shared flags bind here).

    Attributes:
      data_dir: dataset root.
      backend: input pipeline (``tfdata``, ``synthetic``, ...; each task checks its own).
      image_size: network input size (the task's type: a side, or ``(H, W)``; None: the model's).
      num_classes: classes (None: from the data).
      class_names: filled in from the data (infer/export labels).
      strict_data: an unusable image or annotation is an error before the first step (default: named, skipped).
    """

    data_dir: Optional[str] = None
    backend: str = "tfdata"
    image_size: Any = None
    num_classes: Optional[int] = None
    class_names: Tuple[str, ...] = ()
    strict_data: bool = False


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Optimisation every task has: one optimizer and one learning-rate vocabulary (families subclass it).

    Attributes:
      optimizer: ``sgd`` | ``rmsprop`` | ``adam`` (a task may allow fewer).
      momentum: SGD / RMSprop momentum.
      lr: peak learning rate for ``lr_batch`` images; scaled linearly with the global batch.
      lr_batch: the batch ``lr`` refers to (1: a per-image rate, NVIDIA's Mask R-CNN).
      lr_schedule: one of :data:`LR_SCHEDULES`.
      warmup_epochs: linear warm-up length (may be fractional).
      warmup_init_lr: ``piecewise``/``step``: the rate at step 0 (for ``lr_batch`` images).
      lr_boundaries: ``piecewise``/``step``: epochs where the rate drops.
      lr_values: ``piecewise``: the rate after each boundary (for ``lr_batch`` images).
      pretrained_from_file: initial weights.
      needs_weights: the recipe fine-tunes: ``train`` refuses to start from random weights (no ``--pretrained``,
        ``--pretrained-from-file`` or ``--resume``).
    """

    optimizer: str = "sgd"
    momentum: float = 0.9
    lr: float = 0.1
    lr_batch: int = 256
    lr_schedule: str = "cosine"
    warmup_epochs: float = 0.0
    warmup_init_lr: float = 0.0
    lr_boundaries: Tuple[float, ...] = ()
    lr_values: Tuple[float, ...] = ()
    pretrained_from_file: Optional[str] = None
    needs_weights: bool = False

    def __post_init__(self):
        check(self.optimizer in OPTIMIZERS, f"--optimizer must be one of {OPTIMIZERS}. Received: {self.optimizer!r}")
        check(self.lr_schedule in LR_SCHEDULES, f"--lr-schedule must be one of {LR_SCHEDULES}. "
                                                f"Received: {self.lr_schedule!r}")
        rates = (self.lr, *self.lr_values)
        check(all(math.isfinite(r) and r > 0 for r in rates), f"learning rates must be finite and > 0. Received: "
                                                               f"--lr {self.lr}, --lr-values {list(self.lr_values)}")
        check(math.isfinite(self.warmup_init_lr) and self.warmup_init_lr >= 0,
              f"--warmup-init-lr must be finite and >= 0. Received: {self.warmup_init_lr}")
        check(self.lr_batch >= 1 and self.warmup_epochs >= 0, f"Need --lr-batch >= 1 and --warmup-epochs >= 0. "
                                                              f"Received: {self.lr_batch}, {self.warmup_epochs}")
        check(list(self.lr_boundaries) == sorted(self.lr_boundaries),
              f"--lr-boundaries must increase. Received: {list(self.lr_boundaries)}")
        if self.lr_schedule == "piecewise":
            check(len(self.lr_values) == len(self.lr_boundaries), "--lr-values needs one rate per --lr-boundaries "
                  f"epoch. Received: {list(self.lr_values)}, {list(self.lr_boundaries)}")


#: members of tagged unions by their ``kind`` (``{"resnet": ResNetConfig, ...}``), see :func:`tagged`.
TAGGED: Dict[str, type] = {}


def tagged(cls):
    """Class decorator: registers a config dataclass with a ``kind`` field as a member of a tagged union.

    A field whose default is one member accepts any other in ``config.json`` (:func:`from_dict` reads
    ``kind``) and on the command line (``--config backbone.kind=resnet`` switches to that member's
    defaults, then the other dotted fields apply).
    """
    kind = cls().kind
    check(TAGGED.get(kind, cls) is cls, f"kind {kind!r} is already registered by {TAGGED.get(kind)}")
    TAGGED[kind] = cls
    return cls


def _member(default: Any, values: Any) -> type:
    """The dataclass that reads ``values`` into a field whose default is ``default``."""
    kind = values.get("kind") if isinstance(values, Mapping) and hasattr(default, "kind") else None
    if kind is None or kind == default.kind:
        return type(default)
    check(kind in TAGGED, f"Unknown kind {kind!r}. Known: {sorted(TAGGED)}")
    return TAGGED[kind]


class DictConfig:
    """``to_dict``/``from_dict`` of a (nested) frozen config dataclass; JSON lists come back as tuples."""

    def to_dict(self) -> Dict[str, Any]:
        """Nested plain dict (tuples kept); inverse of :meth:`from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):
        """Builds a config from :meth:`to_dict` output (or its JSON)."""
        return from_dict(cls, values)


@dataclasses.dataclass(frozen=True)
class Experiment(DictConfig):
    """A whole run; families subclass it with their ``data`` and ``task`` types."""

    model: str = ""
    workspace: str = "./workspace"
    runtime: RuntimeConfig = RuntimeConfig()
    trainer: TrainerConfig = TrainerConfig()
    data: DataConfig = DataConfig()
    task: TaskConfig = TaskConfig()

    def override(self, overrides: Mapping[str, Any]) -> "Experiment":
        """Copy with fields replaced by dotted name (see :func:`replace_flat`)."""
        return replace_flat(self, overrides)


# ------------------------------------------------------------------- config.json
def save_config(experiment: Experiment, folder: str) -> str:
    """Writes ``<folder>/config.json`` (the resolved experiment); returns its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, CONFIG_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(experiment.to_dict(), f, indent=1)
    os.replace(tmp, path)
    return path


def find_config(*paths: Optional[str]) -> Optional[str]:
    """``config.json`` in the first of ``paths`` (or its parent: checkpoint folders) holding one."""
    for path in paths:
        if not path:
            continue
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        for candidate in (folder, os.path.dirname(os.path.abspath(folder.rstrip("/")))):
            file = os.path.join(candidate, CONFIG_FILE)
            if os.path.isfile(file):
                return file
    return None


def read_json_object(path: str, remedy: str = "") -> Dict[str, Any]:
    """A JSON object file the product wrote (``config.json``, a checkpoint's ``meta.json``); a damaged one raises
    :class:`common.command.errors.CheckpointError` naming it (one line at the command line), ``remedy`` appended."""
    from common.command.errors import CheckpointError

    try:
        with open(path) as f:
            values = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is damaged, not valid JSON ({err}){remedy}") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} is damaged (not a JSON object){remedy}")
    return values


def read_config_dict(path: str) -> Dict[str, Any]:
    """The raw dict of a ``config.json`` (:func:`read_json_object`)."""
    return read_json_object(path, "; delete it or pass the flags again")


# ------------------------------------------------------------------ dotted names
def coerce(value: Any, like: Any) -> Any:
    """Converts a JSON/CLI value to the type of the default ``like`` (lists -> tuples)."""
    if isinstance(like, bool):
        check(isinstance(value, bool), f"Expected a bool. Received: {value!r}")
        return value
    if isinstance(like, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(like, tuple) or isinstance(value, list):
        check(isinstance(value, (list, tuple)), f"Expected a sequence like {like!r}. Received: {value!r}")
        inner = like[0] if isinstance(like, tuple) and like else None
        return tuple(coerce(v, inner) if inner is not None else _to_tuples(v) for v in value)
    return value


def _to_tuples(value: Any) -> Any:
    """Nested lists -> nested tuples."""
    return tuple(_to_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def from_dict(cls, values: Mapping[str, Any]):
    """Builds the config dataclass ``cls`` from ``dataclasses.asdict`` output (recursively)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    check(not unknown, f"Unknown {cls.__name__} fields {unknown}. Known: {sorted(fields)}")
    defaults = cls()
    kwargs = {}
    for name, value in values.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = value if dataclasses.is_dataclass(value) else from_dict(_member(default, value), value)
        else:
            kwargs[name] = coerce(value, default)
    return cls(**kwargs)


def flatten(config, prefix: str = "") -> Iterable[Tuple[str, Any]]:
    """Yields ``(dotted_name, value)`` for every leaf field of a nested config."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            yield from flatten(value, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", value


def get_path(config, path: str) -> Any:
    """Value at dotted ``path`` (``"trainer.epochs"``)."""
    for part in path.split("."):
        config = getattr(config, part)
    return config


def replace_flat(config, overrides: Mapping[str, Any], _prefix: str = ""):
    """Copy of a (nested) config dataclass with fields replaced by dotted name.

    Args:
      config: any config dataclass.
      overrides: ``{"rpn.pre_nms_topk_train": 1000, "backbone.width_multiplier": 0.25}``;
        lists become tuples and ints become floats where the default is a float. A ``kind``
        field (tagged unions, :func:`tagged`) switches the member first: ``{"backbone.kind": "resnet",
        "backbone.depth": 101}``.

    Returns:
      A new config (validated by the dataclasses' ``__post_init__``).

    Raises:
      ValueError: an unknown dotted name (the message lists the valid ones).
    """
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    nested: Dict[str, Any] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        known = head in fields and (not rest or dataclasses.is_dataclass(fields[head]))
        if not known:
            names = ", ".join(sorted(_prefix + name for name, _ in flatten(config)))
            raise ValueError(f"Unknown config field {_prefix + key!r}. Known fields: {names}")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            nested[head] = coerce(value, fields[head])
    for head, sub in list(nested.items()):
        if isinstance(sub, dict):
            current = fields[head]
            if "kind" in sub and sub["kind"] != getattr(current, "kind", None):
                current = _member(current, {"kind": sub["kind"]})()
            rest = {k: v for k, v in sub.items() if k != "kind"}
            nested[head] = replace_flat(current, rest, f"{_prefix}{head}.")
    return dataclasses.replace(config, **nested)


_JSON_WORDS = {"true": True, "false": False, "null": None}


def parse_overrides(items: Iterable[str]) -> Dict[str, Any]:
    """Command-line ``["rpn.min_size=1.0", "backbone.finetune_bn=True"]`` -> dict.

    Values are Python literals (``ast.literal_eval``; JSON's ``true``/``false``/``null`` too); anything else stays
    a string.
    """
    parsed = {}
    for item in items:
        key, sep, text = item.partition("=")
        check(bool(sep) and bool(key), f"Overrides look like 'name=value'. Received: {item!r}")
        if text.strip() in _JSON_WORDS:
            parsed[key.strip()] = _JSON_WORDS[text.strip()]
            continue
        try:
            parsed[key.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            parsed[key.strip()] = text.strip()
    return parsed
