"""Implementations of the EfficientNet modes (called from :mod:`efficientnet_tf2.cli`)."""
from __future__ import annotations

import json
import logging
import os
from typing import List, Optional

import numpy as np
import tensorflow as tf

from common import distribution, precision
from common.checkpoint import restore_model_only
from common.ema import ModelEMA
from common.optimizers import build_optimizer
from common.runtime import setup_run
from common.schedules import WarmupCosine, WarmupLinear
from common.trainer import Trainer, TrainerConfig
from efficientnet_tf2 import data as data_lib
from efficientnet_tf2.ngc import load_pretrained_weights
from efficientnet_tf2.task import ClassificationConfig, DataBackendError, ImageClassificationTask

_log = logging.getLogger(__name__)
META_FILE = "model_meta.json"


def _pick(value, default):
    return default if value is None else value


def _setup(args):
    """Seeds, precision policy, strategy and logger common to every mode."""
    return setup_run(args, args.workspace)


def _task(args, recipe, training: bool) -> ImageClassificationTask:
    data_dir = getattr(args, "data", None) or getattr(args, "data_dir", None)
    backend = getattr(args, "data_backend", "tfdata")
    num_classes = args.num_classes
    if num_classes is None:
        num_classes = 1000 if backend == "synthetic" or not data_dir else \
            len(data_lib.list_image_folder(data_dir, "train")[2])
    config = ClassificationConfig(
        model=args.model, data_dir=data_dir, data_backend=backend, num_classes=num_classes,
        image_size=args.image_size, seed=_pick(args.seed, 0),
        augment=_pick(getattr(args, "augmentation", None), recipe.augment),
        mixup=_pick(getattr(args, "mixup", None), recipe.mixup) if training else 0.0,
        label_smoothing=_pick(getattr(args, "label_smoothing", None), recipe.label_smoothing) if training else 0.0,
        model_overrides=_model_overrides(args))
    try:
        return ImageClassificationTask(config)
    except DataBackendError as error:  # e.g. dali-gpu without a GPU: one line, no traceback
        raise SystemExit(f"error: {error}") from None


def _model_overrides(args) -> dict:
    """EfficientNetConfig fields set from the command line."""
    overrides = {"padding": args.padding}
    if getattr(args, "bn_momentum", None) is not None:
        overrides["bn_momentum"] = args.bn_momentum
    return overrides


def _write_meta(task: ImageClassificationTask, workspace: str) -> None:
    """Saves what inference needs besides weights (names, sizes) next to the checkpoints."""
    meta = {"model": task.config.model, "num_classes": task.config.num_classes,
            "image_size": task.image_size, "padding": task.model_config.padding,
            "class_names": task.class_names}
    with open(os.path.join(workspace, META_FILE), "w") as f:
        json.dump(meta, f, indent=1)


def train(args, recipe) -> int:
    """``main.py train``: the seed-003 recipe with its flags."""
    policy, strategy, chief, logger, log_file = _setup(args)
    task = _task(args, recipe, training=True)
    batch = _pick(args.batch_size, recipe.batch_size)
    global_batch = distribution.global_batch_size(batch, strategy)
    epochs = _pick(args.epochs, recipe.epochs)
    steps = min(x for x in (task.steps_per_epoch(global_batch), args.steps_per_epoch, args.prof, 10**9) if x)
    lr = distribution.scale_learning_rate(_pick(args.lr, recipe.lr), global_batch, _pick(args.lr_batch, recipe.lr_batch))
    schedule = _lr_schedule(_pick(getattr(args, "lr_schedule", None), recipe.lr_schedule), lr, epochs * steps,
                            _pick(args.warmup, recipe.warmup_epochs) * steps)
    with strategy.scope():
        model = task.build_model()
        if args.pretrained_from_file:
            load_pretrained_weights(model, args.pretrained_from_file)
        model = _quantize_if_needed(model, args.model, fixed_ranges=bool(args.pretrained_from_file))
        optimizer = build_optimizer(_pick(args.optimizer, recipe.optimizer), schedule,
                                    momentum=_pick(args.momentum, recipe.momentum),
                                    rho=_pick(args.rmsprop_alpha, recipe.rmsprop_alpha),
                                    epsilon=_pick(args.rmsprop_eps, recipe.rmsprop_eps))
        optimizer = precision.wrap_optimizer(optimizer, policy, args.static_loss_scale)
        ema = ModelEMA(model, args.use_ema) if args.use_ema else None
    config = TrainerConfig(epochs=epochs, steps_per_epoch=steps, eval_steps=args.eval_steps, prof=args.prof,
                           log_every=args.log_every, weight_decay=_pick(args.weight_decay, recipe.weight_decay),
                           xla=args.xla, workspace=args.workspace, save_checkpoints=not args.no_checkpoints,
                           evaluate_every=0 if args.training_only else 1)
    trainer = Trainer(task, model, optimizer, config, logger, strategy=strategy, ema=ema, policy=policy,
                      is_chief=chief)
    logger.log("PARAMETER", {"model": args.model, "precision": policy, "global_batch": global_batch,
                             "lr": lr, "epochs": epochs, "steps_per_epoch": steps, "image_size": task.image_size,
                             "num_classes": task.config.num_classes, "xla": args.xla,
                             "replicas": strategy.num_replicas_in_sync})
    if args.resume:
        trainer.resume(args.resume)
    elif args.pretrained_from_file:
        _calibrate_if_needed(model, args, task, global_batch, logger)
    if chief:
        _write_meta(task, args.workspace)
    trainer.fit(global_batch)
    _print_outputs(args.workspace, log_file, chief)
    return 0


def _lr_schedule(kind: str, peak_lr: float, total_steps: int, warmup_steps: int):
    """Per-step LR: ``cosine`` (float recipes, QAT B0) or ``linear`` decay to 0 (QAT B4)."""
    if kind == "linear":
        return WarmupLinear(peak_lr, total_steps, warmup_steps)
    return WarmupCosine(peak_lr, total_steps, warmup_steps)


def _quantize_if_needed(model, model_name: str, fixed_ranges: bool = False):
    """QAT variants: the float ``model`` (FP32 weights already loaded) wrapped for quantization.

    ``fixed_ranges``: activation ranges stay as calibrated (fine-tuning from FP32 weights)
    instead of following a moving average of the training batches' ``max|x|``.
    """
    from efficientnet_tf2 import qat, registry

    if not registry.is_quantized(model_name) or qat.is_quantized(model):
        return model
    return qat.quantize_model(model, qat.FIXED_RANGES if fixed_ranges else qat.DEFAULT_EMA_DECAY)


def _calibrate_if_needed(model, args, task, global_batch, logger) -> None:
    """QAT from FP32 weights: activation ranges from ``--calibration-steps`` training batches."""
    from efficientnet_tf2 import qat

    steps = getattr(args, "calibration_steps", qat.DEFAULT_CALIBRATION_BATCHES)
    if not qat.is_quantized(model) or not steps:
        return
    method = getattr(args, "calibration_method", qat.DEFAULT_CALIBRATION)
    used = qat.calibrate(model, task.build_train_dataset(global_batch, epoch=0), steps, method)
    logger.log("PARAMETER", {"calibration_batches": used, "calibration_method": method})


def _print_outputs(workspace, log_file, chief):
    if chief:
        print(f"checkpoints: {os.path.abspath(workspace)}/checkpoint-latest, model_best")
        print(f"DLLogger log: {os.path.abspath(log_file)}")


def load_model_for_inference(args, recipe=None, num_classes=None):
    """Builds the model and loads ``--checkpoint``/``--pretrained-from-file``.

    Model facts (classes, image size, padding, class names) come from the
    workspace's ``model_meta.json`` when present, else from the flags.
    Returns ``(model, meta)``.
    """
    from efficientnet_tf2 import registry
    from efficientnet_tf2.model import build_efficientnet

    meta = _read_meta(args.checkpoint) or _read_meta(args.workspace) or {}
    classes = args.num_classes or num_classes or meta.get("num_classes") or 1000
    size = args.image_size or meta.get("image_size")
    config = registry.get_config(args.model, num_classes=classes, padding=meta.get("padding", args.padding))
    size = size or config.resolution
    model = build_efficientnet(config, input_shape=(size, size, 3), name=args.model.replace("-", "_"))
    if args.checkpoint:
        model = _quantize_if_needed(model, args.model)
        restore_model_only(args.checkpoint, model, use_ema=getattr(args, "use_ema", False))
    elif args.pretrained_from_file:
        load_pretrained_weights(model, args.pretrained_from_file)
    else:
        _log.warning("no --checkpoint or --pretrained-from-file: using randomly initialised weights")
    if not args.checkpoint and registry.is_quantized(args.model):
        _log.warning("%s without a QAT --checkpoint: activation ranges are uncalibrated", args.model)
    model = _quantize_if_needed(model, args.model)
    meta.update(num_classes=classes, image_size=size, model=args.model)
    return model, meta


def _read_meta(path: Optional[str]) -> Optional[dict]:
    """``model_meta.json`` in ``path`` or its parent (checkpoint dirs live in the workspace)."""
    if not path:
        return None
    for folder in (path, os.path.dirname(os.path.abspath(path.rstrip("/")))):
        candidate = os.path.join(folder, META_FILE)
        if os.path.isfile(candidate):
            with open(candidate) as f:
                return json.load(f)
    return None


def evaluate(args, recipe) -> int:
    """``main.py eval``: val.loss, val.top1, val.top5, val.total_ips, val.compute_ips."""
    policy, strategy, chief, logger, _ = _setup(args)
    meta = _read_meta(args.checkpoint) or _read_meta(args.workspace) or {}
    args.image_size = args.image_size or meta.get("image_size")
    task = _task(args, recipe, training=False)
    batch = _pick(args.batch_size, recipe.batch_size)
    global_batch = distribution.global_batch_size(batch, strategy)
    with strategy.scope():
        model, _ = load_model_for_inference(args, num_classes=task.config.num_classes)
    config = TrainerConfig(eval_steps=args.eval_steps, xla=args.xla, workspace=None, save_checkpoints=False)
    trainer = Trainer(task, model, None, config, logger, strategy=strategy, policy=policy, is_chief=chief)
    metrics = trainer.evaluate(global_batch)
    logger.flush()
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}, indent=1))
    return 0


def infer(args, recipe) -> int:
    """``main.py infer``: top-k classes with names and probabilities for each image."""
    from efficientnet_tf2.inference import Classifier, format_predictions

    policy = precision.resolve_precision(precision=args.precision)
    precision.configure_precision(policy, tf32=args.tf32 and args.precision != "FP32")
    model, meta = load_model_for_inference(args)
    names = _class_names(args, meta)
    classifier = Classifier(model, meta["image_size"], names)
    for path, preds in classifier.classify_files(_expand_images(args.images), top_k=args.top_k):
        print(format_predictions(path, preds))
    return 0


def _class_names(args, meta) -> List[str]:
    if getattr(args, "class_names", None):
        with open(args.class_names) as f:
            return [line.strip() for line in f if line.strip()]
    return meta.get("class_names") or [str(i) for i in range(meta["num_classes"])]


def _expand_images(items) -> List[str]:
    """Files as given; folders expanded to their JPEG/PNG files (sorted)."""
    out = []
    for item in items:
        if os.path.isdir(item):
            out += sorted(os.path.join(root, f) for root, _, files in os.walk(item) for f in files
                          if f.lower().endswith(data_lib.IMAGE_EXTENSIONS))
        elif os.path.isfile(item):
            out.append(item)
        else:
            raise FileNotFoundError(f"no such image file or folder: {item}")
    if not out:
        raise FileNotFoundError(f"no JPEG/PNG images found in {items}")
    return out


def export(args, recipe) -> int:
    """``main.py export``: SavedModel with uint8-image and encoded-bytes signatures, or ONNX."""
    from efficientnet_tf2.export import export_saved_model

    model, meta = load_model_for_inference(args)
    if getattr(args, "format", "savedmodel") == "onnx":
        return _export_onnx(args, model, meta)
    out = args.export_dir or os.path.join(args.workspace, "saved_model")
    export_saved_model(model, out, image_size=meta["image_size"], class_names=_class_names(args, meta))
    print(f"SavedModel written to {os.path.abspath(out)} (signatures: serving_default, serving_bytes)")
    if args.verify:
        _verify_export(model, out, meta["image_size"], _expand_images(args.verify))
    return 0


def _export_onnx(args, model, meta) -> int:
    """Writes ``<export-dir or workspace>/model.onnx``; ``--verify`` compares onnxruntime with Keras."""
    from efficientnet_tf2 import onnx_export, registry

    out = os.path.join(args.export_dir or args.workspace, "model.onnx")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    onnx_export.export_onnx(model, out, meta["image_size"], _class_names(args, meta), opset=args.opset)
    print(f"ONNX written to {os.path.abspath(out)} (opset {args.opset}; input uint8 [B, "
          f"{meta['image_size']}, {meta['image_size']}, 3] centre crops; outputs probabilities, classes)")
    if args.verify:
        _verify_onnx(model, out, meta["image_size"], _expand_images(args.verify),
                     registry.is_quantized(args.model))
    return 0


def _verify_onnx(model, path, image_size, paths, quantized: bool) -> dict:
    """onnxruntime vs Keras on ``paths``: FP32 needs max |dprob| <= 1e-4, QAT the same top-1."""
    from efficientnet_tf2.onnx_export import compare_with_keras
    from efficientnet_tf2.preprocessing import eval_resize_crop

    crops = np.stack([eval_resize_crop(data_lib.decode_image_file(p), image_size).numpy() for p in paths])
    result = compare_with_keras(model, path, crops)
    print(f"verified {len(paths)} image(s): max |ONNX - Keras| probability difference = "
          f"{result['max_abs_diff']:.2e}, top-1 agreement {100 * result['top1_agreement']:.1f}%")
    if quantized and result["top1_agreement"] < 1.0:
        raise SystemExit("error: quantized ONNX model disagrees with Keras on the top-1 class")
    if not quantized and result["max_abs_diff"] > 1e-4:
        raise SystemExit(f"error: exported model differs from Keras by {result['max_abs_diff']:.2e} (> 1e-4)")
    return result


def _verify_export(model, export_dir, image_size, paths) -> float:
    """Max |probability difference| between the reloaded SavedModel and Keras on ``paths``."""
    from efficientnet_tf2.inference import Classifier

    loaded = tf.saved_model.load(export_dir)
    classifier = Classifier(model, image_size, [])
    worst = 0.0
    for path in paths:
        with open(path, "rb") as f:
            served = loaded.signatures["serving_bytes"](image_bytes=tf.constant([f.read()]))
        worst = max(worst, float(np.max(np.abs(served["probabilities"].numpy()[0] - classifier.probabilities(path)))))
    print(f"verified {len(paths)} image(s): max |SavedModel - Keras| probability difference = {worst:.2e}")
    if worst > 1e-4:
        raise SystemExit(f"error: exported model differs from Keras by {worst:.2e} (> 1e-4)")
    return worst
