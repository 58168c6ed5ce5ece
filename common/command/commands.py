"""The flows of every mode, written once for every family: train, eval, infer, export, info, benchmark.

Each takes a parsed :class:`common.command.cli.Invocation`; the family (``invocation.family``)
supplies only its task, model, optimizer, predictions writer and exporter.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import sys
from typing import Dict, List, Optional, Sequence

from common.command import cli, registry
from common.command.config import save_config

_log = logging.getLogger(__name__)
CHECKPOINT_NAMES = ("model_best", "checkpoint-latest")
BENCHMARK_COLUMNS = ("model", "mode", "runtime", "precision", "xla", "batch", "image_size", "throughput",
                     "latency_mean", "latency_p50", "latency_p90", "latency_p95", "latency_p99")
FALLBACK_STEPS = 100  # steps per epoch when the data cannot say (synthetic inputs, TFRecords)


def run(invocation: cli.Invocation) -> int:
    """Runs the invocation's mode; returns the exit status."""
    from common.io import pixel_budget
    from common.weights import pretrained

    pixel_budget.set_max_pixels(invocation.experiment.runtime.max_image_pixels)
    invocation = pretrained.apply(invocation)
    flows = {"train": train, "eval": evaluate, "infer": infer, "export": export, "info": info,
             "benchmark": benchmark}
    return int(flows[invocation.mode](invocation) or 0)


# ------------------------------------------------------------------- helpers
def expand_images(items: Sequence[str]) -> List[str]:
    """:func:`common.io.images.list_images` with a one-line error instead of a traceback."""
    from common.io.images import list_images

    try:
        return list_images(items)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None


def trained_checkpoint(invocation: cli.Invocation, workspace: str) -> Optional[str]:
    """:func:`find_checkpoint`, except that weights asked for on this command line (``--pretrained``,
    ``--pretrained-from-file``) are not overridden by a checkpoint lying in the workspace."""
    options = invocation.options
    if not options.checkpoint and (options.pretrained or invocation.values.get("task.pretrained_from_file")):
        return None
    return find_checkpoint(options.checkpoint, workspace)


def find_checkpoint(checkpoint: Optional[str], workspace: str) -> Optional[str]:
    """``--checkpoint``, else ``<workspace>/model_best``, else ``<workspace>/checkpoint-latest`` (None: none).

    Raises:
      FileNotFoundError: ``--checkpoint`` names nothing restorable (before any model is built).
    """
    if checkpoint:
        from common.training.checkpoint import resolve

        resolve(checkpoint)
        return checkpoint
    for name in CHECKPOINT_NAMES:
        folder = os.path.join(workspace, name)
        if os.path.isdir(folder):
            return folder
    return None


def require_weights(experiment, checkpoint: Optional[str], options) -> None:
    """Eval/infer/export need trained weights: a checkpoint, ``--pretrained-from-file`` or ``--random-weights``.

    Raises:
      SystemExit: none of them (one line; a mistyped ``--workspace`` is the usual cause), before any folder is made.
    """
    if checkpoint or experiment.task.pretrained_from_file or options.random_weights:
        return
    where = experiment.workspace if os.path.isdir(experiment.workspace) else f"{experiment.workspace} (no such folder)"
    raise SystemExit(f"error: no checkpoint in {where}: expected model_best/ or checkpoint-latest/ of a training run; "
                     "pass the run's --workspace or --checkpoint, --pretrained-from-file, or --random-weights to run "
                     "an untrained model")


def _steps_per_epoch(experiment, task, global_batch: int) -> int:
    """Smallest of the data's steps, ``--steps-per-epoch`` and ``--prof`` (100 if none is known)."""
    limits = [x for x in (task.steps_per_epoch(global_batch), experiment.trainer.steps_per_epoch,
                          experiment.trainer.prof) if x]
    return min(limits) if limits else FALLBACK_STEPS


def _start(invocation: cli.Invocation):
    """Train/eval set-up: the family's hook, seeds, precision, strategy, logger, then the task.

    Returns:
      ``(run context, task, experiment resolved by the data)``.
    """
    from common.command.runtime import setup_run

    experiment = invocation.family.prepare(invocation.experiment, invocation.mode)
    training = invocation.mode == "train"
    run = setup_run(experiment.runtime, experiment.workspace, lock=training)
    try:
        task, experiment = invocation.family.build_task(experiment, training=training)
    except BaseException:
        run.release()
        raise
    return run, task, experiment


# --------------------------------------------------------------------- train
def _freezable(family, experiment, model) -> list:
    """The backbone layers when ``--freeze-backbone``/``--freeze-epochs`` asks for them (one-line error when the
    family has none)."""
    trainer = experiment.trainer
    if not (trainer.freeze_backbone or trainer.freeze_epochs):
        return []
    layers = family.backbone_layers(model)
    if not layers:
        raise SystemExit(f"error: --freeze-backbone/--freeze-epochs: {experiment.model} has no backbone to freeze")
    return layers


def check_resume(path: str, experiment) -> None:
    """``--resume`` of a run whose optimizer or EMA setting this command changes: one line saying what differs
    (the saved optimizer state cannot continue another optimizer), before any work."""
    from common.command.config import find_config, read_config_dict
    from common.command.errors import CheckpointError

    config = find_config(path)
    if config is None:
        return
    saved = read_config_dict(config)
    pairs = {"--optimizer": (saved.get("task", {}).get("optimizer"), experiment.task.optimizer),
             "--use-ema": (saved.get("trainer", {}).get("use_ema"), experiment.trainer.use_ema)}
    differ = [f"{flag} {was} then, {now} now" for flag, (was, now) in pairs.items() if was is not None and was != now]
    if differ:
        raise CheckpointError(f"--resume {path}: that run was trained with another setup ({'; '.join(differ)}) and "
                              "its optimizer state cannot continue this one: resume with the run's own flags, or "
                              f"start a new run from its weights with --pretrained-from-file {path}")


def train(invocation: cli.Invocation) -> int:
    """``main.py train``: the family's recipe through the shared trainer; writes ``config.json``."""
    options = invocation.options
    task = invocation.experiment.task
    if task.needs_weights and not (task.pretrained_from_file or options.resume):
        model = invocation.experiment.model
        raise SystemExit(f"error: {model} fine-tunes published weights: add --pretrained (its default; others: "
                         "`main.py weights list`) or --pretrained-from-file FILE")
    if options.resume:
        from common.training.checkpoint import resolve

        resolve(options.resume)  # a wrong --resume fails before the data is read
        check_resume(options.resume, invocation.experiment)
    run, task, experiment = _start(invocation)
    try:
        return _fit(invocation, run, task, experiment)
    finally:
        run.release()


def _fit(invocation: cli.Invocation, run, task, experiment) -> int:
    """The body of :func:`train` once the workspace is held: model, optimizer, trainer, ``config.json``, fit."""
    from common.training import distribution, precision
    from common.training.ema import ModelEMA
    from common.training.trainer import Trainer

    family, options = invocation.family, invocation.options
    global_batch = distribution.global_batch_size(experiment.trainer.batch_size, run.strategy)
    steps = _steps_per_epoch(experiment, task, global_batch)
    experiment = dataclasses.replace(experiment, trainer=dataclasses.replace(experiment.trainer, steps_per_epoch=steps))
    with run.strategy.scope():
        model = family.build_model(experiment, task)
        optimizer = precision.wrap_optimizer(family.build_optimizer(experiment, global_batch, steps), run.policy,
                                             experiment.runtime.static_loss_scale)
        ema = ModelEMA(model, experiment.trainer.ema_decay) if experiment.trainer.use_ema else None
    trainer = Trainer(task, model, optimizer, experiment.trainer, run.logger, strategy=run.strategy, ema=ema,
                      workspace=experiment.workspace, xla=experiment.runtime.xla,
                      backbone_layers=_freezable(family, experiment, model))
    run.logger.log("PARAMETER", {"model": experiment.model, "precision": run.policy, "global_batch": global_batch,
                                 "epochs": experiment.trainer.epochs, "steps_per_epoch": steps,
                                 "xla": experiment.runtime.xla, "replicas": run.strategy.num_replicas_in_sync,
                                 **family.describe(experiment)})
    if options.resume:
        trainer.resume(options.resume)
    family.before_training(experiment, model, task, global_batch, run.logger, resumed=bool(options.resume))
    if run.is_chief:
        save_config(experiment, experiment.workspace)
    eval_batch = distribution.global_batch_size(experiment.trainer.validation_batch_size, run.strategy)
    trainer.fit(global_batch, eval_batch=eval_batch)
    if run.is_chief:
        run.logger.flush()
        print(f"checkpoints: {os.path.abspath(experiment.workspace)}/checkpoint-latest, model_best\n"
              f"config: {os.path.abspath(os.path.join(experiment.workspace, 'config.json'))}\n"
              f"DLLogger log: {os.path.abspath(run.log_file)}")
        _write_report(experiment.workspace)
    return 0


def _write_report(workspace: str) -> None:
    """``<workspace>/report.html`` at the end of train and eval, its path printed (a failure is a warning)."""
    from common.io.report import write_report

    try:
        print(f"report: {write_report(workspace)}")
    except (OSError, ValueError) as err:
        logging.getLogger(__name__).warning("report.html not written: %s", err)


# ---------------------------------------------------------------------- eval
def evaluate(invocation: cli.Invocation) -> int:
    """``main.py eval``: the family's validation metrics, as DLLogger lines and printed JSON."""
    from common.training import distribution
    from common.training.trainer import Trainer

    family, options = invocation.family, invocation.options
    runtime = single_runtime(invocation)
    checkpoint = trained_checkpoint(invocation, invocation.experiment.workspace)
    require_weights(invocation.experiment, checkpoint, options)
    run, task, experiment = _start(invocation)
    try:
        with run.strategy.scope():
            model = family.load_model(experiment, checkpoint, use_ema=options.use_ema)
        model = family.runtime_model(experiment, model, runtime_file(options, runtime), runtime)
        trainer = Trainer(task, model, None, experiment.trainer, run.logger, strategy=run.strategy,
                          report_dir=os.path.join(experiment.workspace, "eval"))
        metrics = trainer.evaluate(distribution.global_batch_size(experiment.trainer.validation_batch_size,
                                                                  run.strategy))
    finally:
        run.release()
    if run.is_chief:
        _write_report(experiment.workspace)
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}, indent=1))  # last: scripts parse it
    return 0


# --------------------------------------------------------------------- infer
def load_model(invocation: cli.Invocation):
    """Precision of the run, then the family's trained model (infer/export).

    Returns:
      ``(experiment as the family prepared it for the mode, model)``.
    """
    from common.command.runtime import configure_runtime

    options = invocation.options
    experiment = invocation.family.prepare(invocation.experiment, invocation.mode)
    runtime = "tf" if invocation.mode == "export" else single_runtime(invocation)
    configure_runtime(experiment.runtime)
    checkpoint = trained_checkpoint(invocation, experiment.workspace)
    require_weights(experiment, checkpoint, options)
    model = invocation.family.load_model(experiment, checkpoint, use_ema=options.use_ema)
    return experiment, invocation.family.runtime_model(experiment, model, runtime_file(options, runtime), runtime)


def runtime_file(options, runtime: str) -> Optional[str]:
    """The file ``--runtime`` runs: ``--tflite-file`` for tflite, ``--onnx-file`` for the ONNX runtimes (None:
    the checkpoint is converted on the fly)."""
    return getattr(options, "tflite_file" if runtime == "tflite" else "onnx_file", None)


def _check_openvino_precision(invocation: cli.Invocation, runtimes: List[str]) -> None:
    """``--openvino-precision`` other than f32 without ``--runtime openvino`` is an error, not ignored."""
    precision = invocation.experiment.runtime.openvino_precision
    if precision != "f32" and "openvino" not in runtimes:
        raise SystemExit(f"error: --openvino-precision {precision} is for --runtime openvino "
                         f"(received --runtime {' '.join(runtimes)})")


def single_runtime(invocation: cli.Invocation) -> str:
    """The one ``--runtime`` of eval/infer (``tf`` unless set; ``onnxruntime`` when only ``--onnx-file`` is,
    ``tflite`` when only ``--tflite-file`` is), checked against the family's before any work."""
    options = invocation.options
    implied = ["onnxruntime"] if options.onnx_file else ["tflite"] if options.tflite_file else ["tf"]
    runtimes = list(options.runtime) or implied
    if len(runtimes) != 1:
        raise SystemExit(f"error: --runtime takes one value here (several only in benchmark); received {runtimes}")
    if options.onnx_file and runtimes[0] not in ("onnxruntime", "openvino"):
        raise SystemExit(f"error: --onnx-file is run by onnxruntime or openvino, not --runtime {runtimes[0]}")
    if options.tflite_file and runtimes[0] != "tflite":
        raise SystemExit(f"error: --tflite-file is run by --runtime tflite, not --runtime {runtimes[0]}")
    _check_openvino_precision(invocation, runtimes)
    invocation.family.check_runtime(runtimes[0], invocation.mode, invocation.experiment)
    return runtimes[0]


def infer(invocation: cli.Invocation) -> int:
    """``main.py infer IMAGE|FOLDER ...``: the family's predictions for each image."""
    paths = expand_images(invocation.options.images)
    experiment, model = load_model(invocation)
    options = invocation.options
    out_dir = options.output_dir or os.path.join(experiment.workspace, "predictions")
    failures = invocation.family.predict(experiment, model, paths, out_dir, options) or []
    if failures:
        shown = "; ".join(f"{path}: {why}" for path, why in failures[:5])
        print(f"error: {len(failures)} of {len(paths)} images could not be processed: {shown}"
              f"{'; ...' if len(failures) > 5 else ''}", file=sys.stderr)
        return 1
    return 0


def export(invocation: cli.Invocation) -> int:
    """``main.py export``: the family's deployable model (``--format``), verified on ``--verify`` images."""
    options = invocation.options
    formats = invocation.family.export_formats
    options = dataclasses.replace(options, format=options.format or formats[0])
    if options.format not in formats:
        raise SystemExit(f"error: --format {options.format!r} is not available for {invocation.experiment.model}; "
                         f"choose {' or '.join(formats)}")
    invocation.family.check_export(invocation.experiment, options)
    target = invocation.family.export_target(invocation.experiment, options.export_dir, options)
    if not options.overwrite and (os.path.isfile(target) or (os.path.isdir(target) and os.listdir(target))):
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it (or --export-dir elsewhere)")
    if options.verify:
        options = dataclasses.replace(options, verify=tuple(expand_images(options.verify)))
    experiment, model = load_model(invocation)
    invocation.family.export(experiment, model, target, options)
    return 0


def info(invocation: cli.Invocation) -> int:
    """``main.py info``: model facts as JSON (parameter counts, input size, classes)."""
    experiment = invocation.family.prepare(invocation.experiment, "info")
    print(json.dumps(invocation.family.info(experiment), indent=1))
    return 0


# ----------------------------------------------------------------- benchmark
def benchmark(invocation: cli.Invocation) -> int:
    """``main.py benchmark --kind training|inference --model A [B ...] -b 1 8 32``.

    For each (model, batch): the family's real step, ``--warmup-steps`` untimed runs, then
    ``--iters`` timed one by one; img/s and true latency percentiles as DLLogger lines and
    a markdown table.
    """
    import tensorflow as tf

    from common.command.benchmark import format_table
    from common.io.logger import setup_logger
    from common.command.runtime import configure_runtime

    options = invocation.options
    floats = [p for p in options.precisions if p != "INT8"]
    if floats:  # the TensorFlow rows' precision (the global policy: one per process)
        invocation = dataclasses.replace(invocation, values={**invocation.values, "runtime.precision": floats[0]},
                                         experiment=invocation.experiment.override({"runtime.precision": floats[0]}))
    runtime = invocation.experiment.runtime
    policy = configure_runtime(runtime)
    log_file = runtime.log_file or "benchmark.json"
    logger = setup_logger(log_file=log_file)
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    logger.log("PARAMETER", {"mode": options.kind, "device": device, "tensorflow": tf.__version__,
                             "machine": platform.machine(), "platform": options.platform or "",
                             "warmup": options.warmup_steps, "iters": options.iters})
    rows, notes = _benchmark_rows(invocation, _benchmark_runtimes(invocation), policy, logger)
    logger.flush()
    table = format_table(rows, BENCHMARK_COLUMNS) if rows else "(no row could run)"
    text = "\n".join([table, *(f"- {n}" for n in notes)])
    print(f"\n{device}, TensorFlow {tf.__version__}; throughput img/s, latency ms\n{text}")
    if options.table_file:
        with open(options.table_file, "w") as f:
            f.write(text + "\n")
    print(f"DLLogger results: {os.path.abspath(log_file)}")
    return 0


def _benchmark_runtimes(invocation) -> List[str]:
    """``--runtime`` values of a benchmark (``tf`` unless set; others time inference only)."""
    runtimes = list(invocation.options.runtime) or ["tf"]
    _check_openvino_precision(invocation, runtimes)
    if invocation.options.kind != "inference" and runtimes != ["tf"]:
        raise SystemExit(f"error: --runtime {' '.join(r for r in runtimes if r != 'tf')} runs inference only; "
                         "use --kind inference")
    return runtimes


def _benchmark_rows(invocation, runtimes: List[str], policy: str, logger):
    """``(rows, notes)``: a row per (model, runtime, precision, batch) that runs; one note per (model, runtime,
    precision) that cannot, the others going on."""
    rows, notes, options = [], [], invocation.options
    precisions = (False, True) if "INT8" in options.precisions else (False,)
    for name, runtime, int8 in [(n, r, q) for n in invocation.models for r in runtimes for q in precisions]:
        why = _unsupported(name, runtime)
        if int8 and runtime == "tf":
            why = "TensorFlow runs int8 models as float fake-quantization; time their int8 files with " \
                  "--runtime onnxruntime, openvino or tflite"
        for batch in options.batch_sizes if not why else ():
            try:
                rows.append(_benchmark_row(invocation, name, batch, runtime, policy, logger, int8))
            except SystemExit as err:  # this combination cannot run: one note, the other rows go on
                why = str(err.code if err.code is not None else err).removeprefix("error: ")
                break
        if why:
            notes.append(f"{name} under {runtime}{' INT8' if int8 else ''}: skipped ({why})")
            print(f"note: {notes[-1]}", flush=True)
    return rows, notes


def _unsupported(name: str, runtime: str) -> Optional[str]:
    """Why ``name``'s family cannot time ``runtime`` (None: it can)."""
    try:
        registry.get_family(name, benchmark=True).check_runtime(runtime, "benchmark")
    except SystemExit as err:
        return str(err.code).removeprefix("error: ")
    return None


def _benchmark_row(invocation, name: str, batch: int, runtime: str, policy: str, logger,
                   int8: bool = False) -> Dict[str, object]:
    from common.command.benchmark import summarize, time_steps

    options, kind = invocation.options, invocation.options.kind
    family = registry.get_family(name, benchmark=True)
    experiment = cli.apply_flags(registry.get_experiment(name, benchmark=True), family, invocation.values)
    experiment = family.prepare(experiment, "benchmark")
    size = family.default_benchmark_size(experiment)
    label = "x".join(map(str, size)) if isinstance(size, tuple) else size
    print(f"[{kind}] {name} ({runtime}{', INT8' if int8 else ''}) batch {batch} @ {label}px: {options.warmup_steps} "
          f"warm-up + {options.iters} timed steps", flush=True)
    if runtime == "tf":
        step = family.benchmark_step(experiment, kind, batch)
    else:
        step = family.runtime_benchmark_step(experiment, batch, runtime, int8=int8)
    precision = experiment.runtime.precision if runtime == "tf" else "INT8" if int8 else "FP32"
    if runtime == "openvino" and experiment.runtime.openvino_precision != "f32":
        precision = f"{precision}+{experiment.runtime.openvino_precision.upper()}"  # e.g. FP32+BF16
    row = dict(model=name, mode=kind, runtime=runtime, precision=precision,
               xla=experiment.runtime.xla, batch=batch, image_size=label,
               **summarize(time_steps(step, options.warmup_steps, options.iters), batch))
    logger.log((name, batch), {"runtime": runtime, **{k: v for k, v in row.items() if isinstance(v, (int, float))}})
    return row
