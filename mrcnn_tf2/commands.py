"""Implementations of the Mask R-CNN modes (called from :mod:`mrcnn_tf2.cli`).

A training run writes ``<model_dir>/model_meta.json`` (model config, input
config, class names and category ids) next to its checkpoints, so eval, infer
and export rebuild exactly the trained model from ``--model_dir``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from common import distribution, precision
from common.checkpoint import resolve, restore_model_only
from common.optimizers import build_optimizer
from common.runtime import setup_run
from common.schedules import WarmupPiecewise
from common.trainer import Trainer, TrainerConfig
from custom_ops import loader as custom_ops_loader
from mrcnn_tf2.config import MaskRCNNConfig, parse_overrides
from mrcnn_tf2.data.pipeline import InputConfig
from mrcnn_tf2.task import DetectionTaskConfig, InstanceSegmentationTask, built_model

_log = logging.getLogger(__name__)
META_FILE = "model_meta.json"
BEST_METRIC = "segm/AP"


def _input_config(image_size, model_config: Optional[MaskRCNNConfig] = None) -> InputConfig:
    size = tuple(image_size) if image_size else (832, 1344)
    mask_size = model_config.gt_mask_size if model_config else 112
    return InputConfig(image_size=size, gt_mask_size=mask_size)


def _model_config(args, num_classes: int, inputs: InputConfig) -> MaskRCNNConfig:
    """NVIDIA defaults, then the data's classes and size, then ``--finetune_bn`` and ``--config``."""
    overrides = {"num_classes": num_classes, "image_size": inputs.batch_padded_size()}
    if args.finetune_bn:
        overrides["backbone.finetune_bn"] = True
    overrides.update(parse_overrides(args.overrides))
    return MaskRCNNConfig().override(**overrides)


def _data(args, need_train: bool):
    from mrcnn_tf2.data.sources import resolve_sources

    if args.use_synthetic_data:
        return None
    return resolve_sources(args.data_dir, eval_file=args.eval_file, train_annotations=args.train_annotations,
                           train_images=args.train_images, eval_images=args.eval_images, need_train=need_train)


def configure_custom_ops(args, mode: str) -> None:
    """``--no_custom_ops`` (and export, whose SavedModel must load without the op libraries): plain-TF ops."""
    if getattr(args, "no_custom_ops", False) or mode == "export":
        custom_ops_loader.set_enabled(False)


def _check_xla(args):
    if args.xla:
        raise SystemExit("error: --xla is not supported for mask-rcnn yet: proposal NMS and multilevel "
                         "ROIAlign use dynamic shapes. Run without --xla.")


def _learning_rate(args, global_batch: int, steps_per_epoch: int) -> WarmupPiecewise:
    """NVIDIA's schedule: linear warm-up for ``boundaries[0]`` epochs, then piecewise constant."""
    bounds = [int(round(b * steps_per_epoch)) for b in args.learning_rate_boundaries]
    values = [v * global_batch for v in args.learning_rate_values]
    if len(values) != len(bounds):
        raise SystemExit("error: --learning_rate_values and --learning_rate_boundaries need the same length "
                         f"(warm-up end + decays). Received: {args.learning_rate_values}, "
                         f"{args.learning_rate_boundaries}")
    return WarmupPiecewise(args.init_learning_rate, bounds[0], bounds[1:], values)


def _optimizer(args, learning_rate):
    """SGD with ``--momentum`` (NVIDIA's), or Adam with Keras' epsilon (1e-7).

    Adam suits training from random weights: the box head's inputs are large (squared norm
    ~5000 per RoI), so SGD steps that are stable for its logits barely move the rest.
    """
    if args.optimizer == "adam":
        return build_optimizer("adam", learning_rate, epsilon=1e-7)
    return build_optimizer("sgd", learning_rate, momentum=args.momentum)


def train(args) -> int:
    """``main.py train --model mask-rcnn``."""
    _check_xla(args)
    policy, strategy, chief, logger, log_file = setup_run(args, args.model_dir)
    data = _data(args, need_train=True)
    inputs = _input_config(args.image_size)
    model_config = _model_config(args, data.num_classes if data else 91, inputs)
    task = InstanceSegmentationTask(DetectionTaskConfig(model_config, inputs, data, args.use_synthetic_data,
                                                        args.eval_samples, 0 if args.seed is None else args.seed))
    global_batch = distribution.global_batch_size(args.train_batch_size, strategy)
    steps = args.steps_per_epoch or task.steps_per_epoch(global_batch) or 100
    with strategy.scope():
        model = task.build_model()
        if args.backbone_checkpoint:
            from mrcnn_tf2.modeling.resnet import load_backbone_weights

            load_backbone_weights(model.backbone, args.backbone_checkpoint)
        optimizer = _optimizer(args, _learning_rate(args, global_batch, steps))
        optimizer = precision.wrap_optimizer(optimizer, policy, args.static_loss_scale)
    config = TrainerConfig(epochs=args.epochs, steps_per_epoch=steps, log_every=args.log_every,
                           weight_decay=args.l2_weight_decay, workspace=args.model_dir,
                           save_checkpoints=not args.no_checkpoints, best_metric=BEST_METRIC,
                           evaluate_every=0 if args.no_eval else args.epochs,
                           grad_accum_steps=args.grad_accum_steps, log_warmup_steps=args.log_warmup_steps,
                           clip_grad_norm=args.clip_grad_norm)
    trainer = Trainer(task, model, optimizer, config, logger, strategy=strategy, policy=policy, is_chief=chief)
    logger.log("PARAMETER", {"model": args.model, "precision": policy, "global_batch": global_batch,
                             "epochs": args.epochs, "steps_per_epoch": steps, "image_size": list(inputs.image_size),
                             "padded_size": list(inputs.batch_padded_size()), "num_classes": model_config.num_classes,
                             "replicas": strategy.num_replicas_in_sync, "grad_accum_steps": args.grad_accum_steps})
    if args.resume:
        trainer.resume(args.resume)
    if chief:
        write_meta(args.model_dir, model_config, inputs, data)
    trainer.fit(global_batch, eval_batch=distribution.global_batch_size(args.eval_batch_size, strategy))
    if chief:
        print(f"checkpoints: {os.path.abspath(args.model_dir)}/checkpoint-latest, model_best\n"
              f"DLLogger log: {os.path.abspath(log_file)}")
    return 0


def write_meta(model_dir: str, model_config: MaskRCNNConfig, inputs: InputConfig, data) -> None:
    """What eval/infer/export need besides the weights."""
    meta = {"model_config": model_config.to_dict(), "input_config": dataclasses.asdict(inputs),
            "class_names": data.class_names if data else [str(i) for i in range(model_config.num_classes)],
            "category_ids": data.category_ids if data else list(range(model_config.num_classes))}
    with open(os.path.join(model_dir, META_FILE), "w") as f:
        json.dump(meta, f, indent=1)


def read_meta(model_dir: str) -> dict:
    path = os.path.join(model_dir, META_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: --model_dir must be the folder of a training run")
    with open(path) as f:
        meta = json.load(f)
    meta["model_config"] = MaskRCNNConfig.from_dict(meta["model_config"])
    meta["input_config"] = InputConfig(**{k: tuple(v) if isinstance(v, list) else v
                                          for k, v in meta["input_config"].items()})
    return meta


def _checkpoint_path(args) -> Optional[str]:
    if args.checkpoint:
        return args.checkpoint
    for name in ("model_best", "checkpoint-latest"):
        folder = os.path.join(args.model_dir, name)
        if os.path.isdir(folder):
            return folder
    return None


def load_model(args, meta: dict):
    """The trained MaskRCNN of ``--model_dir`` (or ``--checkpoint``)."""
    config = meta["model_config"]
    if args.overrides:
        config = config.override(**parse_overrides(args.overrides))
    model = built_model(config)
    path = _checkpoint_path(args)
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {args.model_dir} (expected model_best/ or checkpoint-latest/); "
                                "pass --checkpoint")
    restore_model_only(path, model)
    print(f"loaded weights from {resolve(path)}")
    return model


def evaluate(args) -> int:
    """``main.py eval --model mask-rcnn``: COCO bbox and segm AP (12 numbers each)."""
    _check_xla(args)
    policy, strategy, chief, logger, _ = setup_run(args, args.model_dir)
    meta = read_meta(args.model_dir)
    data = _data(args, need_train=False)
    inputs = meta["input_config"] if not args.image_size else _input_config(args.image_size)
    task = InstanceSegmentationTask(DetectionTaskConfig(meta["model_config"], inputs, data, args.use_synthetic_data,
                                                        args.eval_samples, 0 if args.seed is None else args.seed))
    with strategy.scope():
        model = load_model(args, meta)
    trainer = Trainer(task, model, None, TrainerConfig(workspace=None, save_checkpoints=False), logger,
                      strategy=strategy, policy=policy, is_chief=chief)
    metrics = trainer.evaluate(distribution.global_batch_size(args.eval_batch_size, strategy))
    logger.flush()
    return 0 if metrics else 1


def infer(args) -> int:
    """``main.py infer --model mask-rcnn IMAGE…``: COCO results JSON + drawn PNGs."""
    from mrcnn_tf2.inference import Detector, expand_image_paths

    policy = precision.resolve_precision(args.amp, args.bf16)
    precision.configure_precision(policy, tf32=args.tf32)
    meta = read_meta(args.model_dir)
    model = load_model(args, meta)
    detector = Detector(model, meta["input_config"], meta["class_names"], meta["category_ids"],
                        score_threshold=args.score_threshold)
    out_dir = args.output_dir or os.path.join(args.model_dir, "predictions")
    results, pngs = detector.run_on_files(expand_image_paths(args.images), out_dir)
    print(f"COCO results: {os.path.abspath(results)}\ndrawn predictions: {os.path.abspath(out_dir)} ({len(pngs)} PNG)")
    return 0


def export(args) -> int:
    """``main.py export --model mask-rcnn``: SavedModel (uint8 images and encoded bytes signatures)."""
    from mrcnn_tf2.export import export_saved_model, verify_export
    from mrcnn_tf2.inference import expand_image_paths

    meta = read_meta(args.model_dir)
    model = load_model(args, meta)
    out = args.export_dir or os.path.join(args.model_dir, "saved_model")
    export_saved_model(model, out, meta["input_config"], meta["class_names"], meta["category_ids"],
                       overwrite=args.overwrite)
    print(f"SavedModel written to {os.path.abspath(out)} (signatures: serving_default, image_bytes)")
    if args.verify:
        from PIL import Image

        images = [np.asarray(Image.open(p).convert("RGB")) for p in expand_image_paths(args.verify)]
        worst = verify_export(model, out, images, meta["input_config"], meta["class_names"], meta["category_ids"])
        print(f"verified {len(images)} image(s): max |SavedModel - Keras| = {worst:.2e}")
    return 0


def info(args) -> int:
    """Prints model facts as JSON (parameter counts, input size)."""
    inputs = _input_config(args.image_size)
    overrides = {"image_size": inputs.batch_padded_size(), **parse_overrides(args.overrides)}
    if args.finetune_bn:
        overrides["backbone.finetune_bn"] = True
    config = MaskRCNNConfig().override(**overrides)
    model = built_model(config)
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    print(json.dumps({"model": args.model, "trainable_params": trainable,
                      "total_params": int(sum(np.prod(v.shape) for v in model.variables)),
                      "input_size": list(config.image_size), "num_classes": config.num_classes,
                      "backbone": f"resnet{config.backbone.depth}-fpn"}, indent=1))
    return 0
