"""The one command line of both model families: ``main.py MODE --model NAME [flags]``.

One flag vocabulary (:data:`SHARED_FLAGS`): dashed names, one name per concept and
one meaning per flag in every mode; NVIDIA's spellings (underscores, ``--arch``,
``--model_dir``, ``--train_batch_size``, ``--raport-file``, ...) are aliases. A family
adds only the flags of concepts it alone has (:meth:`common.command.family.Family.flags`).

Each flag names where its value goes: a dotted field of the experiment config
(``trainer.epochs``), or ``opt.NAME`` for a command option that is not part of the
run's configuration (``--checkpoint``, ``--export-dir``, image paths). Unset flags
leave the recipe (train) or the workspace's ``config.json`` (eval/infer/export)
untouched; ``--config name=value`` overrides apply last.

NVIDIA's mode-less command lines (``main.py --arch efficientnet-b0 --evaluate ...``,
``launch.py --mode benchmark_training ...``) are rewritten by :func:`translate_legacy`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from common.command import config as cfg
from common.command import options as options_lib
from common.command import registry

MODES = ("train", "eval", "infer", "export", "info", "benchmark")
MODEL_MODES = ("train", "eval", "infer", "export", "info")
DEFAULT_MODEL = "efficientnet-b0"
OPTIMIZERS = cfg.OPTIMIZERS
# Same as common.training.distribution.STRATEGIES (not imported: that would load TensorFlow for --help).
DIST_CHOICES = ("auto", "none", "one_device", "mirrored", "multiworker", "horovod")
BENCHMARK_KINDS = ("training", "inference")
RUNTIMES = ("tf", "onnxruntime", "openvino", "tflite")  # --runtime (common.io.{onnx,openvino,tflite}_runtime)
_ALL = MODES
_RUN = ("train", "eval", "infer", "export")
_DATA = ("train", "eval")
_LOADED = ("eval", "infer", "export")


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag: its spellings (canonical first), where it goes, and argparse kwargs.

    Attributes:
      names: option strings, canonical dashed name first, then aliases (NVIDIA's spellings).
      dest: dotted experiment field (``"trainer.epochs"``) or ``"opt.NAME"`` (command option).
      help: one line for ``--help``.
      modes: the modes that accept the flag.
      kwargs: argparse ``add_argument`` keywords (``type``, ``action``, ``const``, ``nargs``, ...).
      group: ``--help`` section.
    """

    names: Tuple[str, ...]
    dest: str
    help: str
    modes: Tuple[str, ...] = _ALL
    kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    group: str = ""

    @property
    def positional(self) -> bool:
        return not self.names[0].startswith("-")

    @property
    def aliases(self) -> Tuple[str, ...]:
        return self.names[1:]

    def section(self) -> str:
        return self.group or {"runtime": "runtime", "trainer": "training", "data": "data",
                              "task": "model", "workspace": "runtime"}.get(self.dest.split(".")[0], "command")


def flag(*names, dest, help, modes=_ALL, group="", **kwargs) -> Flag:  # noqa: A002 (argparse's word)
    return Flag(tuple(names), dest, help, tuple(modes), kwargs, group)


def _const(value):
    return {"action": "store_const", "const": value}


# ------------------------------------------------------- checked numeric values
def _number(kind, low=None, high=None, low_open=False, name=""):
    """argparse ``type``: ``kind(text)`` within [low, high] (``low_open``: > low), else a one-line error."""
    rule = " and ".join(x for x in (
        None if low is None else f"{'>' if low_open else '>='} {low}",
        None if high is None else f"<= {high}") if x)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"received {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high) or value != value:
            raise argparse.ArgumentTypeError(f"must be {rule}, received {text}")
        return value

    parse.__name__ = name or f"{kind.__name__} {rule}"
    return parse


POSITIVE_INT = _number(int, low=1)
NON_NEGATIVE_INT = _number(int, low=0)
POSITIVE_FLOAT = _number(float, low=0, low_open=True)
NON_NEGATIVE_FLOAT = _number(float, low=0)
UNIT_FLOAT = _number(float, low=0, high=1)


SHARED_FLAGS: Tuple[Flag, ...] = (
    # runtime: every mode
    flag("--amp", dest="runtime.precision", help="mixed precision float16 (dynamic loss scaling)", **_const("AMP")),
    flag("--bf16", dest="runtime.precision", help="mixed precision bfloat16", **_const("BF16")),
    flag("--precision", dest="runtime.precision", type=str.upper, choices=cfg.PRECISIONS,
         modes=("train", "eval", "infer", "export", "info"), help="FP32 | TF32 | AMP (= --amp) | BF16 (= --bf16)"),
    flag("--precisions", "--precision", dest="opt.precisions", type=str.upper, nargs="+",
         choices=cfg.PRECISIONS + ("INT8",), modes=("benchmark",),
         help="TensorFlow rows: FP32 | TF32 | AMP | BF16 (the first given); INT8 adds the int8 file of each "
              "other --runtime (QAT models: their own Q/DQ graph on ONNX runtimes; float models: calibrated "
              "post-training int8)"),
    flag("--static-loss-scale", "--static_loss_scale", dest="runtime.static_loss_scale", type=POSITIVE_FLOAT,
         help="fixed loss scale for --amp (unset: dynamic)"),
    flag("--no-tf32", dest="runtime.tf32", help="disable TensorFloat-32 math on Ampere+ GPUs", **_const(False)),
    flag("--xla", dest="runtime.xla", help="compile the steps with XLA (jit_compile)", **_const(True)),
    flag("--no-xla", "--no_xla", dest="runtime.xla", help="do not use XLA", **_const(False)),
    flag("--seed", dest="runtime.seed", type=int, help="random seed"),
    flag("--max-image-pixels", dest="runtime.max_image_pixels", type=POSITIVE_INT, metavar="N",
         help="images declaring more pixels are refused before decoding (decompression bombs; default 100000000); "
              "export: fixed in the serving_bytes signature"),
    flag("--dist", dest="runtime.dist", choices=DIST_CHOICES, modes=_DATA + ("benchmark",),
         help="distribution: auto (mirrored over >1 GPU), none, one_device, mirrored, multiworker "
              "(TF_CONFIG; scripts/launch.py), horovod (under horovodrun; untested)"),
    flag("--gpus", dest="runtime.gpus", type=POSITIVE_INT, modes=_DATA + ("benchmark",),
         help="NVIDIA's --gpus N: mirrored over the first N GPUs"),
    flag("--eagerly", dest="runtime.eagerly", modes=_DATA, help="run eagerly (debugging only, slow)",
         **_const(True)),
    flag("--deterministic", dest="runtime.deterministic", modes=_DATA,
         help="reproducible runs: TensorFlow op determinism (same seed, same result; slower)", **_const(True)),
    flag("--log-file", "--raport-file", "--log_file", dest="runtime.log_file",
         help="DLLogger JSON-lines file (unset: <workspace>/raport.json)"),
    flag("--log-tensorboard", "--log_tensorboard", dest="runtime.log_tensorboard", metavar="DIR",
         help="TensorBoard summaries (scalars, the run's pictures, PR curves) go to DIR "
              "(default: <workspace>/tensorboard)"),
    flag("--no-tensorboard", dest="runtime.tensorboard", help="write no TensorBoard summaries", **_const(False)),
    flag("-v", "--verbose", dest="opt.verbose", action="store_true",
         help="show TensorFlow's start-up and debug logs"),
    flag("--workspace", "--model_dir", "--model-dir", dest="workspace", modes=MODEL_MODES,
         help="checkpoints, logs, config.json and exports go here"),
    flag("--config", dest="opt.config", action="extend", nargs="+", metavar="NAME=VALUE",
         help="config overrides applied last: model fields (rpn.post_nms_topk_test=500) or any "
              "experiment field (trainer.epochs=3)"),
    # model
    flag("--image-size", "--image_size", dest="data.image_size", nargs="+", metavar="S|HxW", group="model",
         help="input size: S, HxW or H W"),
    flag("--num-classes", "--num_classes", dest="data.num_classes", type=POSITIVE_INT, group="model",
         help="classes (unset: from the data)"),
    flag("--pretrained-from-file", dest="task.pretrained_from_file", modes=MODEL_MODES, group="model",
         help="initial weights: Keras .h5 / .weights.h5, a TF checkpoint or workspace, or a PyTorch state_dict "
              "(.pth, read without torch; or .npz): NVIDIA NGC EfficientNet (use --padding symmetric), torchvision "
              "Mask R-CNN; another --num-classes starts the class head fresh (fine-tuning)"),
    flag("--pretrained", dest="opt.pretrained", nargs="?", const="default", metavar="NAME", modes=_RUN,
         group="model",
         help="published weights by name (`main.py weights list`; no NAME: the model's own), downloaded once, "
              "sha256-checked, into $TF2VISION_HOME/weights (default ~/.cache/tf2vision)"),
    # data
    flag("data", dest="data.data_dir", nargs="?", modes=_DATA, help="dataset root (same as --data-dir)"),
    flag("--data-dir", "--data_dir", dest="data.data_dir", modes=_DATA, help="dataset root"),
    flag("--data-backend", "--data-backends", "--data_backend", dest="data.backend", modes=_DATA,
         help="tfdata | synthetic | (EfficientNet) dali-cpu, dali-gpu"),
    flag("--use-synthetic-data", "--use_synthetic_data", dest="data.backend", modes=_DATA,
         help="random inputs (= --data-backend synthetic)", **_const("synthetic")),
    flag("--strict-data", dest="data.strict_data", modes=_DATA,
         help="an unusable image or annotation is an error before the first step (default: each is named "
              "in one summary, listed in <workspace>/unusable_<split>.tsv, and skipped)", **_const(True)),
    # training
    flag("--epochs", dest="trainer.epochs", type=POSITIVE_INT, modes=("train",), help="training epochs"),
    flag("--steps-per-epoch", "--steps_per_epoch", dest="trainer.steps_per_epoch", type=POSITIVE_INT, modes=("train",),
         help="cap on steps per epoch (unset: training images // global batch)"),
    flag("-b", "--batch-size", "--batch_size", "--train-batch-size", "--train_batch_size",
         dest="trainer.batch_size", type=POSITIVE_INT, modes=_DATA, help="training images per replica"),
    flag("--eval-batch-size", "--eval_batch_size", dest="trainer.eval_batch_size", type=POSITIVE_INT, modes=_DATA,
         group="evaluation", help="validation images per replica (unset: --batch-size)"),
    flag("--eval-steps", dest="trainer.eval_steps", type=POSITIVE_INT, modes=_DATA, group="evaluation",
         help="cap on validation batches"),
    flag("--eval-samples", "--eval_samples", dest="trainer.eval_samples", type=POSITIVE_INT, modes=_DATA,
         group="evaluation", help="cap on validation images"),
    flag("--no-eval", "--no_eval", "--training-only", dest="trainer.evaluate", modes=("train",),
         group="evaluation", help="skip validation", **_const(False)),
    flag("--early-stop-patience", dest="trainer.early_stop_patience", type=POSITIVE_INT, modes=("train",),
         group="evaluation", metavar="N",
         help="stop after N evaluations without a better primary metric (top-1 / bbox AP); model_best keeps the best"),
    flag("--eval-every", dest="trainer.eval_every", type=POSITIVE_INT, modes=("train",), group="evaluation",
         help="epochs between validations (unset: after the last epoch only)"),
    flag("--optimizer", dest="task.optimizer", choices=OPTIMIZERS, modes=("train",), group="training",
         help="optimizer (EfficientNet: rmsprop|sgd|adam; Mask R-CNN: sgd|adam)"),
    flag("--lr", dest="task.lr", type=POSITIVE_FLOAT, modes=("train",), group="learning rate",
         help="peak learning rate for --lr-batch images (scaled linearly with the global batch)"),
    flag("--lr-batch", dest="task.lr_batch", type=POSITIVE_INT, modes=("train",), group="learning rate",
         help="the batch size --lr (and --lr-values, --warmup-init-lr) refer to; 1: per-image rates"),
    flag("--lr-schedule", dest="task.lr_schedule", choices=cfg.LR_SCHEDULES, modes=("train",), group="learning rate",
         help="cosine / linear: decay to 0 after the warm-up; piecewise: --lr-values from each --lr-boundaries "
              "epoch; step: a tenth at each boundary"),
    flag("--warmup-epochs", "--warmup", dest="task.warmup_epochs", type=NON_NEGATIVE_FLOAT, modes=("train",),
         group="learning rate", help="linear warm-up to --lr over this many epochs (fractions allowed)"),
    flag("--warmup-init-lr", "--init-learning-rate", "--init_learning_rate", dest="task.warmup_init_lr",
         type=NON_NEGATIVE_FLOAT, modes=("train",), group="learning rate",
         help="piecewise / step: the rate the warm-up starts from"),
    flag("--lr-boundaries", dest="task.lr_boundaries", type=NON_NEGATIVE_FLOAT, nargs="+", modes=("train",),
         group="learning rate", help="piecewise / step: epochs where the rate drops"),
    flag("--lr-values", dest="task.lr_values", type=POSITIVE_FLOAT, nargs="+", modes=("train",),
         group="learning rate", help="piecewise: the rate from each --lr-boundaries epoch on"),
    flag("--learning-rate-values", "--learning_rate_values", dest="legacy.learning_rate_values", type=POSITIVE_FLOAT,
         nargs="+", modes=("train",), group="learning rate",
         help="NVIDIA's Mask R-CNN spelling: A B C = --lr A --lr-values B C --lr-schedule piecewise"),
    flag("--learning-rate-boundaries", "--learning_rate_boundaries", dest="legacy.learning_rate_boundaries",
         type=NON_NEGATIVE_FLOAT, nargs="+", modes=("train",), group="learning rate",
         help="NVIDIA's Mask R-CNN spelling: W X Y = --warmup-epochs W --lr-boundaries X Y"),
    flag("--momentum", dest="task.momentum", type=UNIT_FLOAT, modes=("train",), group="training",
         help="optimizer momentum"),
    flag("--weight-decay", "--l2_weight_decay", "--wd", dest="trainer.weight_decay", type=NON_NEGATIVE_FLOAT,
         modes=("train",), help="L2 on kernels (not BN, not biases)"),
    flag("--grad-accum-steps", "--grad_accum_steps", dest="trainer.grad_accum_steps", type=POSITIVE_INT,
         modes=("train",), help="batches per optimizer update"),
    flag("--clip-grad-norm", "--clip_grad_norm", dest="trainer.clip_grad_norm", type=POSITIVE_FLOAT, modes=("train",),
         help="clip gradients to this global norm"),
    flag("--use-ema", dest="trainer.use_ema", modes=("train",),
         help="keep an EMA of the weights (evaluated as val.ema.*, checkpointed)", **_const(True)),
    flag("--ema-decay", dest="trainer.ema_decay", type=UNIT_FLOAT, modes=("train",), help="EMA decay"),
    flag("--resume", dest="opt.resume", modes=("train",),
         help="continue training from a checkpoint (or a workspace)"),
    flag("--save-every-steps", dest="trainer.save_every_steps", type=POSITIVE_INT, modes=("train",),
         help="also write checkpoint-latest every N steps, mid-epoch (an exact --resume continues there)"),
    flag("--save-every-minutes", dest="trainer.save_every_minutes", type=NON_NEGATIVE_FLOAT, modes=("train",),
         help="also write checkpoint-latest when this many minutes passed since the last save (0: epoch ends only)"),
    flag("--freeze-backbone", dest="trainer.freeze_backbone", modes=("train",), group="model",
         help="train only the layers after the backbone (its BatchNorms in inference mode)", **_const(True)),
    flag("--freeze-epochs", dest="trainer.freeze_epochs", type=NON_NEGATIVE_INT, modes=("train",), group="model",
         metavar="N", help="freeze the backbone for the first N epochs (the head learns first), then train all"),
    flag("--no-checkpoints", "--no_checkpoints", dest="trainer.save_checkpoints", modes=("train",),
         help="do not write checkpoints", **_const(False)),
    flag("--prof", dest="trainer.prof", type=POSITIVE_INT, modes=("train",), metavar="N",
         help="stop each epoch after N steps (NVIDIA's profiling runs)"),
    flag("--log-every", "--print-freq", "--log_every", dest="trainer.log_every", type=POSITIVE_INT, modes=("train",),
         help="iterations between log lines"),
    flag("--log-warmup-steps", "--log_warmup_steps", dest="trainer.log_warmup_steps", type=NON_NEGATIVE_INT,
         modes=("train",), help="first steps left out of throughput figures"),
    # loaded models: eval, infer, export
    flag("--checkpoint", dest="opt.checkpoint", modes=_LOADED, group="model",
         help="checkpoint folder or prefix (unset: <workspace>/model_best, else checkpoint-latest)"),
    flag("--random-weights", dest="opt.random_weights", modes=_LOADED, group="model", action="store_true",
         help="no checkpoint and no --pretrained-from-file: run the untrained model (otherwise an error)"),
    flag("--ema-weights", "--use-ema", dest="opt.use_ema", modes=_LOADED, group="model", action="store_true",
         help="use the EMA weights of the checkpoint"),
    # runtime of the loaded model
    flag("--runtime", dest="opt.runtime", action="append", choices=RUNTIMES, modes=("eval", "infer"),
         group="runtime", help="tf (default) | onnxruntime (CPU; EfficientNet: the checkpoint is exported to ONNX "
                               "first unless --onnx-file; Mask R-CNN: the network, inside the TF input pipeline) | "
                               "openvino (EfficientNet: the ONNX export on OpenVINO's CPU plugin) | tflite "
                               "(EfficientNet: LiteRT with XNNPACK; converted first unless --tflite-file)"),
    flag("--runtimes", "--runtime", dest="opt.runtime", nargs="+", choices=RUNTIMES, modes=("benchmark",), group="benchmark",
         help="runtimes to time, one row each: tf | onnxruntime (inference; both families) | openvino | tflite "
              "(EfficientNet); a combination a model cannot run is one note, not the end of the run"),
    flag("--onnx-file", dest="opt.onnx_file", modes=("eval", "infer"), group="runtime",
         help="an ONNX file for --runtime onnxruntime or openvino (unset: exported on the fly and its path logged; "
                 "EfficientNet: `export --format onnx` files too)"),
    flag("--openvino-precision", dest="runtime.openvino_precision", choices=cfg.OPENVINO_PRECISIONS,
         modes=("eval", "infer", "benchmark"), group="runtime",
         help="float arithmetic of --runtime openvino: f32 (default: TensorFlow's probabilities to ~1e-6) | bf16 "
              "(faster on CPUs with AVX512-BF16 or AMX; probabilities move by ~1e-2) | f16"),
    flag("--tflite-file", dest="opt.tflite_file", modes=("eval", "infer"), group="runtime",
         help="a .tflite file for --runtime tflite (EfficientNet: `export --format tflite`, any --quantize)"),
    # infer
    flag("images", dest="opt.images", nargs="+", modes=("infer",), group="inference",
         help="image files or folders (searched recursively for JPEG/PNG)"),
    flag("--output-dir", "--output_dir", dest="opt.output_dir", modes=("infer",), group="inference",
         help="where predictions are written (unset: <workspace>/predictions)"),
    # export
    flag("--export-dir", "--export_dir", dest="opt.export_dir", modes=("export",), group="export",
         help="output folder (unset: <workspace>/saved_model, or <workspace> for onnx)"),
    flag("--format", dest="opt.format", modes=("export",), group="export", help="savedmodel | onnx | tflite "
         "(EfficientNet)"),
    flag("--opset", dest="opt.opset", type=POSITIVE_INT, modes=("export",), group="export",
         help="ONNX opset (default and minimum: EfficientNet 13 for per-channel Q/DQ, Mask R-CNN 17)"),
    flag("--overwrite", dest="opt.overwrite", action="store_true", modes=("export",), group="export",
         help="replace an existing export"),
    flag("--verify", dest="opt.verify", nargs="*", metavar="IMAGE", modes=("export",), group="export",
         help="reload the export and compare it with the Keras model on these images"),
    # benchmark
    flag("data", dest="opt.data", nargs="?", modes=("benchmark",), group="benchmark",
         help="accepted for NVIDIA's command lines; benchmarks time synthetic on-device batches"),
    flag("--kind", dest="opt.kind", choices=BENCHMARK_KINDS, modes=("benchmark",),
         group="benchmark", help="time the training step or the inference forward"),
    flag("--batch-sizes", "-b", "--batch-size", "--batch_size", dest="opt.batch_sizes", type=POSITIVE_INT, nargs="+",
         modes=("benchmark",), group="benchmark", help="batch sizes to time"),
    flag("--warmup-steps", dest="opt.warmup_steps", type=NON_NEGATIVE_INT, modes=("benchmark",), group="benchmark",
         help="untimed steps (tracing, compilation)"),
    flag("--iters", "--prof", dest="opt.iters", type=POSITIVE_INT, modes=("benchmark",), group="benchmark",
         help="timed steps per batch size"),
    flag("--table-file", dest="opt.table_file", modes=("benchmark",), group="benchmark",
         help="also write the markdown table here"),
    flag("--platform", dest="opt.platform", modes=("benchmark",), group="benchmark",
         help="label of the machine in the log (NVIDIA's DGX1V, DGXA100)"),
)


def parse_image_size(values: Sequence[str]) -> Tuple[int, int]:
    """``["224"]``, ``["832x1344"]`` or ``["128", "128"]`` -> ``(height, width)``."""
    text = "x".join(str(v) for v in values).lower()
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if not match or int(match.group(1)) <= 0 or int(match.group(2) or 1) <= 0:
        raise SystemExit(f"error: --image-size takes S, HxW or H W (positive integers); received {' '.join(values)}")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


# --------------------------------------------------------------------- legacy
def translate_legacy(argv: Sequence[str]) -> List[str]:
    """NVIDIA's mode-less spellings -> ``MODE ...``.

    ``main.py [--arch X] ... --evaluate --epochs 1 --resume CKPT`` (seed 003) becomes
    ``eval ... --checkpoint CKPT``; ``launch.py --mode benchmark_training|benchmark_inference``
    becomes ``benchmark --kind training|inference``; other mode-less lines train.
    """
    argv = list(argv)
    if not argv or argv[0] in MODES or argv[0] in ("-h", "--help"):
        return argv
    first = argv[0]
    if not (first.startswith("-") or "/" in first or os.path.exists(first)):
        raise SystemExit(f"error: unknown mode {first!r}; expected one of {', '.join(MODES)} "
                         "(or NVIDIA's mode-less flags, e.g. --arch NAME --evaluate DATA)")
    mode = "eval" if "--evaluate" in argv else "train"
    argv = [a for a in argv if a != "--evaluate"]
    if "--mode" in argv:
        i = argv.index("--mode")
        kind = argv[i + 1] if i + 1 < len(argv) else ""
        if kind not in ("benchmark_training", "benchmark_inference"):
            raise SystemExit(f"error: --mode {kind!r}: expected benchmark_training or benchmark_inference")
        mode = "benchmark"
        argv[i:i + 2] = ["--kind", kind.split("_")[1]]
    if mode in ("eval", "benchmark"):
        argv = _drop_option(argv, "--epochs")  # "--evaluate --epochs 1": one pass, no training
        argv = ["--checkpoint" if a == "--resume" else a for a in argv] if mode == "eval" else argv
    return [mode] + argv


def _drop_option(argv: List[str], name: str) -> List[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        if not arg.startswith(name + "="):
            out.append(arg)
    return out


# --------------------------------------------------------------------- parsing
@dataclasses.dataclass(frozen=True)
class Invocation:
    """A parsed command: what to run, on which model, with which configuration.

    Attributes:
      mode: one of :data:`MODES`.
      family: the :class:`common.command.family.Family` of the model (first model for benchmarks).
      experiment: the resolved-before-data experiment (recipe or config.json, then flags, then --config).
      options: command options (``opt.*`` flags): the family's dataclass of the mode
        (:mod:`common.command.options`).
      models: model names (several only for ``benchmark``).
      values: every parsed flag by dest (to configure the other models of a benchmark).
    """

    mode: str
    family: Any
    experiment: cfg.Experiment
    options: options_lib.Options
    models: Tuple[str, ...]
    values: Dict[str, Any] = dataclasses.field(default_factory=dict)


def flags_for(mode: str, family) -> List[Flag]:
    """Shared flags of ``mode`` then the family's own."""
    return [f for f in SHARED_FLAGS if mode in f.modes] + [f for f in family.flags(mode) if mode in f.modes]


def _legacy_values(values: Sequence[float]) -> Dict[str, Any]:
    """NVIDIA's ``--learning_rate_values A B C``: the rate after warm-up, then from each boundary on."""
    return {"task.lr": values[0], "task.lr_values": tuple(values[1:]), "task.lr_schedule": "piecewise"}


def _legacy_boundaries(values: Sequence[float]) -> Dict[str, Any]:
    """NVIDIA's ``--learning_rate_boundaries W X Y``: the end of the warm-up, then each decay."""
    return {"task.warmup_epochs": values[0], "task.lr_boundaries": tuple(values[1:])}


#: flags that stand for several fields (NVIDIA's spellings of what is one concept per flag here).
EXPANSIONS = {"legacy.learning_rate_values": _legacy_values, "legacy.learning_rate_boundaries": _legacy_boundaries}


def _help_text(item: Flag, base: Optional[cfg.Experiment], options_class: type) -> str:
    action = item.kwargs.get("action", "store")
    if item.dest.startswith(("opt.", "legacy.")) or base is None or action != "store":
        default = options_lib.default_of(options_class, item.dest[4:]) if item.dest.startswith("opt.") else None
        if isinstance(default, tuple):
            default = " ".join(map(str, default))
        return item.help + (f" (default: {default})" if default not in (None, False, (), "") else "")
    value = cfg.get_path(base, item.dest)
    if isinstance(value, tuple) and item.dest == "data.image_size":
        value = "x".join(map(str, value))
    return item.help + (f" (default: {value})" if value not in (None, "", ()) else "")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: argument -b/--batch-size: must be >= 1, received 0``."""

    def error(self, message: str):
        raise SystemExit(f"error: {message} (`{self.prog} -h` lists the flags)")


def _has_field(base: Optional[cfg.Experiment], dest: str) -> bool:
    """``dest`` is an ``opt.*`` option or a field of ``base`` (always True without a base)."""
    if base is None or dest.startswith(("opt.", "legacy.")):
        return True
    try:
        cfg.get_path(base, dest)
    except (AttributeError, KeyError):
        return False
    return True


def build_parser(mode: str, family, model: str, base: Optional[cfg.Experiment] = None) -> argparse.ArgumentParser:
    """The parser of ``MODE --model MODEL``: shared flags, then the family's."""
    parser = ArgumentParser(
        prog=f"main.py {mode}", description=f"{mode} {model} ({family.name} family)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    model_help = "model name(s)" if mode == "benchmark" else "registered model name"
    parser.add_argument("--model", "--arch", dest="opt.model", nargs="+" if mode == "benchmark" else None,
                        default=argparse.SUPPRESS, metavar="NAME", help=f"{model_help} (see `main.py -h`)")
    groups: Dict[str, argparse._ArgumentGroup] = {}
    options_class = family.options_class(mode)
    for item in flags_for(mode, family):
        if not _has_field(base, item.dest):
            continue  # a shared concept this family's experiment does not have (e.g. no data checks)
        group = groups.get(item.section()) or groups.setdefault(item.section(), parser.add_argument_group(item.section()))
        kwargs = dict(item.kwargs)
        kwargs.setdefault("default", argparse.SUPPRESS)
        if kwargs.get("action", "store") in ("store", "extend") and "choices" not in kwargs and not item.positional:
            kwargs.setdefault("metavar", item.dest.split(".")[-1].upper())
        if item.positional:
            kwargs.setdefault("metavar", item.names[0].upper())
            group.add_argument(item.dest, help=_help_text(item, base, options_class), **kwargs)
        else:
            group.add_argument(*item.names, dest=item.dest, help=_help_text(item, base, options_class), **kwargs)
    return parser


def _prescan(argv: Sequence[str], several_models: bool = False) -> argparse.Namespace:
    """``--model``, workspace and checkpoint before the full parser exists."""
    pre = ArgumentParser(prog="main.py", add_help=False)
    pre.add_argument("--model", "--arch", nargs="+" if several_models else 1, default=None)
    pre.add_argument("--workspace", "--model_dir", "--model-dir", default=None)
    pre.add_argument("--checkpoint", default=None)
    known, _ = pre.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    return known


def base_experiment(mode: str, family, model: str, workspace: Optional[str], checkpoint: Optional[str]):
    """Train: the recipe of ``model``. Eval/infer/export: the run's ``config.json`` if any, else the recipe."""
    if mode in _LOADED:
        path = cfg.find_config(checkpoint, workspace or registry.get_experiment(model).workspace)
        if path:
            values = cfg.read_config_dict(path)
            if values.get("model") != model:
                raise SystemExit(f"error: {path} is a {values.get('model')!r} run, not {model!r}: "
                                 f"pass --model {values.get('model')}")
            try:
                return rebased(family.experiment_class.from_dict(values), os.path.dirname(os.path.abspath(path)))
            except (ValueError, TypeError, KeyError) as err:
                raise SystemExit(f"error: {path} is not a valid config of this version ({err}); "
                                 "fix it or retrain") from None
    return registry.get_experiment(model, benchmark=mode == "benchmark")


def rebased(experiment: cfg.Experiment, folder: str) -> cfg.Experiment:
    """A saved run's experiment writing only into ``folder``, the workspace holding its ``config.json``: the
    file's own workspace, log file and TensorBoard folder are not followed (a copied or edited ``config.json``
    cannot send an ``eval`` anywhere else); flags given now still choose."""
    runtime = dataclasses.replace(experiment.runtime, log_file=None, log_tensorboard=None)
    return dataclasses.replace(experiment, workspace=folder, runtime=runtime)


def model_from_workspace(argv: Sequence[str]) -> Optional[str]:
    """The model of the run in ``--workspace``/``--checkpoint`` (eval/infer/export without --model)."""
    known = _prescan(argv)
    path = cfg.find_config(known.checkpoint, known.workspace)
    return cfg.read_config_dict(path).get("model") if path else None


def apply_flags(experiment: cfg.Experiment, family, values: Dict[str, Any]) -> cfg.Experiment:
    """Flag values (by dest) onto ``experiment``; ``--config`` overrides last."""
    overrides = {}
    for dest, value in values.items():
        if dest.startswith("opt."):
            continue
        if dest in EXPANSIONS:
            overrides.update(EXPANSIONS[dest](value))
            continue
        if dest == "data.image_size":
            value = family.image_size_value(*parse_image_size(value))
        overrides[dest] = value
    sections = {f.name for f in dataclasses.fields(experiment)}
    try:
        for key, value in cfg.parse_overrides(values.get("opt.config") or []).items():
            if key == "model":
                raise SystemExit(f"error: --config model={value}: the model is chosen with --model (a registered "
                                 "experiment), not a config field")
            overrides[key if key.split(".")[0] in sections else family.config_prefix() + key] = value
        return experiment.override(overrides)
    except (ValueError, TypeError) as err:
        raise SystemExit(f"error: {err}") from None


def _bare_pretrained(argv: Sequence[str]) -> List[str]:
    """``--pretrained DATA`` (seed 003's spelling) keeps DATA positional: ``--pretrained`` takes the next word
    only when it names published weights."""
    from common.weights.registry import DEFAULT, PUBLISHERS, is_name

    def names_weights(word: str) -> bool:
        return is_name(word) or (word.lower().startswith(PUBLISHERS) and not os.path.exists(word))

    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--pretrained" and (i + 1 == len(out) or out[i + 1].startswith("-") or
                                      not names_weights(out[i + 1])):
            out[i] = f"--pretrained={DEFAULT}"
    return out


def parse(argv: Sequence[str]) -> Invocation:
    """``[MODE, ...flags]`` -> :class:`Invocation` (SystemExit with one line on bad input)."""
    argv = _bare_pretrained(translate_legacy(argv))
    mode, rest = argv[0], argv[1:]
    if mode not in MODES:
        raise SystemExit(f"error: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    known = _prescan(rest, several_models=mode == "benchmark")
    models = tuple(known.model or [model_from_workspace(rest) if mode in _LOADED else None] or [])
    models = tuple(m for m in models if m) or (DEFAULT_MODEL,)
    family = registry.get_family(models[0], benchmark=mode == "benchmark")
    for name in models[1:]:
        registry.get_family(name, benchmark=True)
    base = base_experiment(mode, family, models[0], known.workspace, known.checkpoint)
    values = vars(build_parser(mode, family, models[0], base).parse_args(rest))
    experiment = apply_flags(base, family, values)
    raw = {k[4:]: v for k, v in values.items() if k.startswith("opt.") and k != "opt.model"}
    return Invocation(mode, family, experiment, options_lib.build(family.options_class(mode), raw), models, values)


def print_overview(stream=None) -> None:
    """``main.py -h``: modes and models."""
    (stream or sys.stdout).write(
        "usage: main.py MODE --model NAME [flags]\n\n"
        f"MODE: {' | '.join(MODES)}\n"
        f"NAME: {', '.join(registry.list_models())}\n"
        f"      (benchmark also: {', '.join(sorted(set(registry.list_models(True)) - set(registry.list_models())))})\n\n"
        "`main.py weights list` lists published weights (--pretrained [NAME]).\n"
        "`main.py MODE --model NAME -h` lists the flags of a mode. NVIDIA's spellings work as aliases\n"
        "(--arch, --model_dir, --train_batch_size, --raport-file, `main.py --evaluate ...`).\n\n"
        "Example: python main.py train --model efficientnet-b0 --amp /data/imagenet\n")
