"""The Mask R-CNN family on the one command layer: experiment config, flags, builders.

NVIDIA's TF2 spellings stay as aliases of the shared flags (``--data_dir``, ``--model_dir``,
``--train_batch_size``, ``--eval_batch_size``, ``--eval_samples``, ``--steps_per_epoch``,
``--l2_weight_decay``, ``--use_synthetic_data``, ``--log_file``, ``--log_every``,
``--log_warmup_steps``, ``--log_tensorboard``, ``--no_eval``) or of this family's own
(``--backbone_checkpoint``, ``--eval_file``, ``--finetune_bn``); ``--init_learning_rate``,
``--learning_rate_values`` and ``--learning_rate_boundaries`` are aliases of the shared learning-rate
flags (:mod:`common.command.cli`). Any model
field can be set with ``--config name=value`` (dotted names of
:class:`mrcnn_tf2.config.MaskRCNNConfig`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from common.command import registry
from common.command.config import find_config
from common.command.family import Family
from mrcnn_tf2.coco_categories import coco_91_layout
from mrcnn_tf2.config import (COCO_NUM_CLASSES, DEFAULT_IMAGE_SIZE, TORCHVISION_BACKBONE,
                              preset_input_fields, preset_model_fields)
from mrcnn_tf2.experiments import (FAMILY as FAMILY_NAME, FLAGS, DetectorExportOptions, DetectorInferOptions,
                                   SegmentationExperiment)

_log = logging.getLogger(__name__)
TORCHVISION_EXTENSIONS = (".pth", ".pt", ".npz")  # as mrcnn_tf2.torchvision_import (TensorFlow-free here)


class MaskRCNNFamily(Family):
    """Mask R-CNN with an FPN on any backbone (NVIDIA's TF2 recipe, torchvision's layout) on COCO-format data."""

    name = FAMILY_NAME
    export_formats = ("savedmodel", "onnx")
    runtimes = ("tf", "onnxruntime")

    experiment_class = SegmentationExperiment

    def flags(self, mode: str) -> List[Any]:
        return list(FLAGS)

    def options_class(self, mode: str) -> type:
        return {"infer": DetectorInferOptions, "export": DetectorExportOptions}.get(mode) or \
            super().options_class(mode)

    def image_size_value(self, height: int, width: int) -> Tuple[int, int]:
        return (height, width)

    def prepare(self, experiment, mode: str):
        """Refuses ``--xla``; resolves the experiment once (train/eval: from the data in :meth:`build_task`;
        the other modes: from the config, classes, preset and input size); exports use plain-TF ops (their
        graphs must load without the op libraries, and ``--verify`` compares like with like)."""
        if experiment.runtime.xla:
            raise SystemExit("error: --xla is not supported for mask-rcnn yet: proposal NMS and multilevel "
                             "ROIAlign use dynamic shapes. Run without --xla.")
        if mode == "export":
            experiment = experiment.override({"task.model.custom_ops": False})
        return experiment if mode in ("train", "eval") else self._resolve(experiment, None)

    # ------------------------------------------------------------- training
    def _sources(self, experiment, training: bool):
        from mrcnn_tf2.data.sources import resolve_sources

        data = experiment.data
        if data.backend == "synthetic":
            return None
        if not (data.data_dir or data.eval_file or data.train_annotations):
            raise SystemExit("error: no data: pass --data-dir (TFRecords or a COCO layout), --train-annotations and "
                             "--train-images, or --use-synthetic-data")
        try:
            if data.val_split and not data.eval_file:
                data = self._held_out(data, experiment, training)
            return resolve_sources(data.data_dir, eval_file=data.eval_file, train_annotations=data.train_annotations,
                                   train_images=data.train_images, eval_images=data.eval_images,
                                   need_train=training, need_val=not training or experiment.trainer.evaluate,
                                   strict=data.strict_data, report_dir=experiment.workspace)
        except FileNotFoundError as err:
            raise SystemExit(f"error: {err}") from None

    @staticmethod
    def _held_out(data, experiment, training: bool):
        """``--val-split``: the data fields pointing at the run's split files (drawn at the first start)."""
        from mrcnn_tf2.data import sources
        from mrcnn_tf2.data.val_split import split_annotations, split_files

        annotations = data.train_annotations or (sources.find_json(data.data_dir, "train") if data.data_dir else None)
        if annotations is None:
            raise FileNotFoundError("--val-split: no training annotation JSON to split (pass --train-annotations or a "
                                    "--data-dir with annotations/instances_train*.json)")
        if not (data.train_images or data.data_dir):
            raise FileNotFoundError(f"--val-split: no image folder for {annotations}: pass --train-images")
        images = data.train_images or sources.images_for(data.data_dir, annotations, "train")
        if training:
            train_file, val_file = split_annotations(annotations, data.val_split, experiment.runtime.seed,
                                                     experiment.workspace)
        else:
            train_file, val_file = split_files(experiment.workspace)
            if not os.path.isfile(val_file):
                raise FileNotFoundError(f"the run's validation split {val_file} is missing (it was trained with "
                                        f"--val-split {data.val_split}); pass --eval-file")
        return dataclasses.replace(data, data_dir=None, train_annotations=train_file, train_images=images,
                                   eval_file=val_file, eval_images=images)

    def _inputs(self, experiment):
        from mrcnn_tf2.config import AUGMENTATIONS
        from mrcnn_tf2.data.inputs import InputConfig

        data = experiment.data
        fields = {**preset_input_fields(experiment.task.preset), **AUGMENTATIONS[data.augment]}
        if data.scale_range:
            fields.update(scale_jitter=tuple(data.scale_range), scale_choices=())
        size = data.image_size or fields.pop("image_size", DEFAULT_IMAGE_SIZE)
        return InputConfig(**{**fields, "image_size": tuple(size), "color_jitter": data.color_jitter})

    def _resolve(self, experiment, sources):
        """Classes from the annotations (else the flags or 91), network size from the input size."""
        data = experiment.data
        classes = data.num_classes or (sources.num_classes if sources else COCO_NUM_CLASSES)
        names = tuple(sources.class_names) if sources else (data.class_names or tuple(str(i) for i in range(classes)))
        ids = tuple(sources.category_ids) if sources else (data.category_ids or tuple(range(classes)))
        resolved = {"data.num_classes": classes, "data.class_names": names, "data.category_ids": ids,
                    "task.model.num_classes": classes,
                    "task.model.image_size": self._inputs(experiment).batch_padded_size()}
        resolved.update(_preset_fields(experiment.task))
        if not sources and classes == COCO_NUM_CLASSES and not data.class_names:
            resolved["data.class_names"], resolved["data.category_ids"] = map(tuple, coco_91_layout())
        return experiment.override(resolved)

    def build_task(self, experiment, training: bool):
        from mrcnn_tf2.task import DetectionTaskConfig, InstanceSegmentationTask

        sources = self._sources(experiment, training)
        experiment = self._resolve(experiment, sources)
        config = DetectionTaskConfig(experiment.task.model, self._inputs(experiment), sources,
                                     experiment.data.backend == "synthetic", experiment.trainer.eval_samples,
                                     experiment.runtime.seed)
        try:
            return InstanceSegmentationTask(config), experiment
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None

    def build_model(self, experiment, task):
        model = task.build_model()
        if experiment.task.pretrained_from_file:
            _load_pretrained(model, experiment.task.pretrained_from_file)
        elif experiment.task.backbone_checkpoint:
            _load_backbone(model.backbone, experiment.task.backbone_checkpoint)
        return model

    def build_optimizer(self, experiment, global_batch: int, steps_per_epoch: int):
        """The task's schedule (NVIDIA's: warm-up for 0.3 epochs, then piecewise constant).

        SGD with ``momentum`` (NVIDIA's), or Adam with Keras' epsilon (1e-7): Adam suits training
        from random weights (the box head's inputs are large, so SGD steps that are stable for
        its logits barely move the rest).
        """
        from common.training.optimizers import build_optimizer
        from common.training.schedules import learning_rate_schedule

        t = experiment.task
        schedule = learning_rate_schedule(t, global_batch, steps_per_epoch, experiment.trainer.epochs)
        if t.optimizer == "adam":
            return build_optimizer("adam", schedule, epsilon=1e-7)
        return build_optimizer("sgd", schedule, momentum=t.momentum)

    def backbone_layers(self, model):
        """The backbone (ResNet / EfficientNet) model; FPN, RPN and heads keep training."""
        return [model.backbone]

    def describe(self, experiment) -> Dict[str, Any]:
        inputs = self._inputs(experiment)
        return {"image_size": list(inputs.image_size), "padded_size": list(inputs.batch_padded_size()),
                "num_classes": experiment.task.model.num_classes,
                "grad_accum_steps": experiment.trainer.grad_accum_steps}

    # ------------------------------------------------------------ inference
    def load_model(self, experiment, checkpoint: Optional[str], use_ema: bool = False):
        from common.training.checkpoint import resolve, restore_model_only
        from mrcnn_tf2.task import built_model

        model = built_model(experiment.task.model)
        if checkpoint is None:  # commands.require_weights: --pretrained-from-file or --random-weights
            if experiment.task.pretrained_from_file:
                _load_pretrained(model, experiment.task.pretrained_from_file)
            else:
                _log.warning("--random-weights: %s is untrained", experiment.model)
            return model
        if not find_config(checkpoint, experiment.workspace):
            raise SystemExit(f"error: no config.json in {experiment.workspace}: --workspace must be the folder of a "
                             "Mask R-CNN training run (or pass --pretrained-from-file)")
        restore_model_only(checkpoint, model, use_ema=use_ema)
        print(f"loaded weights from {resolve(checkpoint)}")
        return model

    def predict(self, experiment, model, paths: Sequence[str], out_dir: str, options: DetectorInferOptions):
        """COCO results JSON + drawn PNGs in ``out_dir``."""
        from mrcnn_tf2.inference import Detector

        data = experiment.data  # names and ids (the 91 COCO ones for imports)
        detector = Detector(model, self._inputs(experiment), list(data.class_names), list(data.category_ids),
                            score_threshold=options.score_threshold, overlap_threshold=options.draw_overlap)
        results, pngs, failures = detector.run_on_files(list(paths), out_dir)
        print(f"COCO results: {os.path.abspath(results)}\ndrawn predictions: {os.path.abspath(out_dir)} ({len(pngs)} PNG)")
        return failures

    def export(self, experiment, model, target: str, options: DetectorExportOptions) -> str:
        """SavedModel with ``serving_default`` (uint8 images) and ``serving_bytes`` (encoded images), or ONNX."""
        from mrcnn_tf2.export import export_saved_model, verify_export
        from mrcnn_tf2.inference import load_image

        data, inputs = experiment.data, self._inputs(experiment)
        if options.format == "onnx":
            return self._export_onnx(model, target, inputs, data, options)
        out = export_saved_model(model, target, inputs, list(data.class_names), list(data.category_ids),
                                 overwrite=options.overwrite)
        print(f"SavedModel written to {os.path.abspath(out)} (signatures: serving_default, serving_bytes)")
        if options.verify:
            images = [load_image(p) for p in options.verify]
            worst = verify_export(model, out, images, inputs, list(data.class_names), list(data.category_ids))
            print(f"verified {len(images)} image(s): max |SavedModel - Keras| = {worst:.2e}")
        return out

    def _export_onnx(self, model, out: str, inputs, data, options: DetectorExportOptions) -> str:
        """``model.onnx`` (tf2onnx); ``--verify``: onnxruntime vs Keras within the issue's tolerances."""
        from common.io import onnx_runtime
        from mrcnn_tf2 import onnx_export
        from mrcnn_tf2.inference import load_image

        onnx_runtime.require_onnxruntime()
        opset, masks = options.opset or onnx_export.MIN_OPSET, options.onnx_masks
        if opset < onnx_export.MIN_OPSET:
            raise SystemExit(f"error: --opset {opset}: Mask R-CNN needs opset >= {onnx_export.MIN_OPSET}")
        size = options.onnx_input_size
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        print(f"converting to ONNX (opset {opset}, masks {masks}; tf2onnx takes about a minute)...", flush=True)
        onnx_export.export_onnx(model, out, inputs, list(data.class_names), list(data.category_ids), masks=masks,
                                opset=opset, image_hw=size)
        hw = f"{size[0]}, {size[1]}" if size else "H, W"
        print(f"ONNX written to {os.path.abspath(out)} ({os.path.getsize(out) / 2**20:.1f} MiB; input uint8 "
              f"[B, {hw}, 3]; outputs {', '.join(onnx_export.OUTPUTS[masks])})")
        if options.verify:
            images = [load_image(p) for p in options.verify]
            try:
                stats = onnx_export.verify_onnx(model, out, images, inputs, list(data.class_names),
                                                list(data.category_ids), masks=masks)
            except onnx_export.OnnxVerificationError as err:
                raise SystemExit(f"error: {err}") from None
            print(f"verified {len(images)} image(s) in {stats['batches']} batch(es), {stats['detections']} "
                  f"detection(s): max |box| {stats['max_box_px']:.2e} px (<= {onnx_export.BOX_TOLERANCE}), "
                  f"max |score| {stats['max_score']:.2e} (<= {onnx_export.SCORE_TOLERANCE}), min mask IoU "
                  f"{stats['min_mask_iou']:.4f} (>= {onnx_export.MIN_MASK_IOU}); counts and classes identical")
        return out

    def info(self, experiment) -> Dict[str, Any]:
        import numpy as np

        from mrcnn_tf2.task import built_model

        config = experiment.task.model
        model = built_model(config)
        trainable = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        return {"model": experiment.model, "trainable_params": trainable,
                "total_params": int(sum(np.prod(v.shape) for v in model.variables)),
                "input_size": list(config.image_size), "num_classes": config.num_classes,
                "backbone": config.backbone.kind + (str(config.backbone.depth) if config.backbone.kind == "resnet"
                                                    else "") + "-fpn"}

    def check_runtime(self, runtime: str, mode: str, experiment=None) -> None:
        """Also refuses ``infer --runtime onnxruntime`` with a per-image canvas (the torchvision preset):
        the network graph has one input size."""
        super().check_runtime(runtime, mode, experiment)
        if runtime == "onnxruntime" and mode == "infer" and experiment is not None \
                and self._inputs(experiment).per_image_canvas:
            raise SystemExit("error: infer --runtime onnxruntime runs one network input size; this preset pads "
                             "each image to its own canvas (torchvision): run infer with --runtime tf")

    def runtime_model(self, experiment, model, onnx_file: Optional[str], runtime: str):
        """``--runtime onnxruntime``: the network exported to ONNX (or ``onnx_file``), run by onnxruntime
        where the Keras model would be (:mod:`mrcnn_tf2.onnx_network`; same input pipeline and post-processing)."""
        if runtime == "tf":
            return model
        import time

        from common.io import onnx_runtime
        from mrcnn_tf2 import onnx_network

        onnx_runtime.require_onnxruntime()
        padded = self._inputs(experiment).batch_padded_size()
        path = onnx_file
        if path is None:
            start = time.perf_counter()
            print("converting the network to ONNX for onnxruntime (tf2onnx takes about a minute)...", flush=True)
            path = onnx_network.export_to_temporary_file(model, padded)
            _log.info("exported the loaded network to ONNX in %.1f s: %s (reuse it with --onnx-file)",
                      time.perf_counter() - start, path)
        runner = onnx_network.OnnxMaskRCNN(path, model.config, padded)
        _log.info(onnx_runtime.describe(runner.session, path))
        return runner

    # ------------------------------------------------------------ benchmark
    def default_benchmark_size(self, experiment) -> Tuple[int, int]:
        return tuple(self._inputs(experiment).image_size)

    def runtime_benchmark_step(self, experiment, batch: int, runtime: str, int8: bool = False):
        """onnxruntime on the model exported once (raw masks, dynamic batch), uint8 images of the input size."""
        from mrcnn_tf2 import benchmark

        if int8:
            raise SystemExit("error: Mask R-CNN has no int8 export (its ROIAlign and NMS stay float)")

        config = experiment.task.model
        return benchmark.make_onnxruntime_infer_step(config, self._inputs(experiment), batch)

    def benchmark_step(self, experiment, kind: str, batch: int):
        from mrcnn_tf2 import benchmark

        config = experiment.task.model
        make = benchmark.make_train_step if kind == "training" else benchmark.make_infer_step
        return make(config, self._inputs(experiment), batch, xla=experiment.runtime.xla)


def _preset_fields(task) -> Dict[str, Any]:
    """Model fields of ``task.preset`` (``mrcnn_tf2.config.preset_model_fields``; a ResNet's only).

    Weights files never choose a preset or a layout: a torchvision file on a model of another layout
    is a one-line error naming the experiment (or the fields) that fits it.
    """
    resnet = task.model.backbone.kind == "resnet"
    if task.backbone_checkpoint and not resnet:
        raise SystemExit(f"error: --backbone-checkpoint takes ResNet weights; this model's backbone is "
                         f"{task.model.backbone.kind}")
    fields = {f"task.model.{k}": v for k, v in preset_model_fields(task.preset).items()
              if resnet or not k.startswith("backbone.")}
    if (task.pretrained_from_file or "").endswith(TORCHVISION_EXTENSIONS) and task.preset != "torchvision":
        raise SystemExit(f"error: {task.pretrained_from_file} is a torchvision Mask R-CNN state_dict: run it with "
                         "--model mask-rcnn-torchvision (or --preset torchvision)")
    if (task.backbone_checkpoint or "").endswith(TORCHVISION_EXTENSIONS) and not _torchvision_layout(task, fields):
        fix = " ".join(f"backbone.{k}={v}" for k, v in TORCHVISION_BACKBONE.items())
        raise SystemExit(f"error: {task.backbone_checkpoint} holds torchvision ResNet weights (v1.5, PyTorch padding, "
                         f"BatchNorm eps 1e-5); this backbone has another layout: add --config {fix}")
    return {"task.preset": task.preset, **fields}


def _torchvision_layout(task, fields: Dict[str, Any]) -> bool:
    """The ResNet backbone (after the preset's ``fields``) has torchvision's layout."""
    backbone = task.model.backbone
    return backbone.kind == "resnet" and all(
        fields.get(f"task.model.backbone.{k}", getattr(backbone, k)) == v for k, v in TORCHVISION_BACKBONE.items())


def _load_backbone(backbone, path: str) -> None:
    """``--backbone-checkpoint``: torchvision ResNet weights (``.pth``/``.pt``/``.npz``) or Keras / TF weights."""
    if path.endswith(TORCHVISION_EXTENSIONS):
        from mrcnn_tf2.torchvision_import import load_backbone_checkpoint

        load_backbone_checkpoint(backbone, path)
        return
    from backbones.resnet import load_backbone_weights

    load_backbone_weights(backbone, path)


def _load_pretrained(model, path: str) -> None:
    """``--pretrained-from-file``: a torchvision state_dict by extension, else Keras / TF weights."""
    if path.endswith(TORCHVISION_EXTENSIONS):
        from mrcnn_tf2.torchvision_import import load_detector_checkpoint

        load_detector_checkpoint(model, path)
    else:
        from common.training.checkpoint import load_weights_file

        load_weights_file(model, path)


FAMILY = registry.register(MaskRCNNFamily())
