"""The classification family on the one command layer: flags and the hooks that run any classifier.

The experiments (configs, recipes, registered names) are :mod:`efficientnet_tf2.experiments`; a
classifier on any backbone of :mod:`backbones` (EfficientNet B0-B7, WideSE, QAT, ResNet-50) runs here.

Every flag of seed 003 that applies keeps its spelling (``--epochs``, ``-b/--batch-size``,
``--lr``, ``--warmup``, ``--label-smoothing``, ``--mixup``, ``--amp``, ``--static-loss-scale``,
``--workspace``, ``--raport-file``, ``--resume``, ``--pretrained-from-file``, ``--no-checkpoints``,
``--num-classes``, ``--data-backend``, ``--prof``, ``--seed``, ``--image-size``); unset recipe
values come from the registered experiment.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from common.command import registry
from common.command.family import Family
from efficientnet_tf2.experiments import (DEFAULT_NUM_CLASSES, FAMILY as FAMILY_NAME, FLAGS, ClassificationExperiment,
                                          ClassifierConfig, ClassifierExportOptions, ClassifierInferOptions)

_log = logging.getLogger(__name__)


class ClassificationFamily(Family):
    """Image classification on ImageFolder data: any backbone (seed 003's EfficientNets, ResNet-50)."""

    name = FAMILY_NAME
    experiment_class = ClassificationExperiment
    export_formats = ("savedmodel", "onnx", "tflite")
    runtimes = ("tf", "onnxruntime", "openvino", "tflite")

    def flags(self, mode: str) -> List[Any]:
        return list(FLAGS)

    def options_class(self, mode: str) -> type:
        return {"infer": ClassifierInferOptions, "export": ClassifierExportOptions}.get(mode) or \
            super().options_class(mode)

    # ------------------------------------------------------------- training
    def _num_classes(self, experiment) -> int:
        from efficientnet_tf2 import data as data_lib

        data = experiment.data
        if data.num_classes is not None:
            return data.num_classes
        if data.backend == "synthetic" or not data.data_dir:
            return DEFAULT_NUM_CLASSES
        return len(data_lib.list_class_folders(os.path.join(data.data_dir, "train")))

    def build_task(self, experiment, training: bool):
        from efficientnet_tf2.task import ClassificationConfig, DataBackendError, ImageClassificationTask

        data, task_cfg = experiment.data, experiment.task
        if data.backend != "synthetic" and not data.data_dir:
            raise SystemExit("error: no data: pass the ImageFolder root (positional DATA or --data-dir), "
                             "or --data-backend synthetic")
        if data.backend != "synthetic" and not os.path.isdir(os.path.join(data.data_dir, "train")):
            raise SystemExit(f"error: {data.data_dir} is not an ImageFolder root: expected "
                             f"{os.path.join(data.data_dir, 'train')}/<class>/<images> (and val/)")
        num_classes = self._num_classes(experiment)
        config = ClassificationConfig(
            model=experiment.model, data_dir=data.data_dir, data_backend=data.backend, num_classes=num_classes,
            image_size=data.image_size, seed=experiment.runtime.seed, augment=data.augment,
            mixup=task_cfg.mixup if training else 0.0,
            label_smoothing=task_cfg.label_smoothing if training else 0.0, model_config=task_cfg.model,
            check_splits=("train", "val") if training and experiment.trainer.evaluate else
            ("train",) if training else ("val",),
            strict_data=data.strict_data, report_dir=experiment.workspace)
        try:
            task = ImageClassificationTask(config)
        except (DataBackendError, FileNotFoundError, ValueError) as error:  # dali-gpu without a GPU, no images
            raise SystemExit(f"error: {error}") from None
        resolved = experiment.override({
            "data.num_classes": num_classes, "data.image_size": task.image_size,
            "data.class_names": tuple(task.class_names or data.class_names),
            "task.model.num_classes": num_classes})
        return task, resolved

    def build_model(self, experiment, task):
        model = task.build_model()
        if experiment.task.pretrained_from_file:
            self._load_initial(experiment, model, name=model.name)
        return _quantize_if_needed(model, experiment.task.model, fixed_ranges=bool(experiment.task.pretrained_from_file))

    def build_optimizer(self, experiment, global_batch: int, steps_per_epoch: int):
        from common.training.optimizers import build_optimizer
        from common.training.schedules import learning_rate_schedule

        t = experiment.task
        schedule = learning_rate_schedule(t, global_batch, steps_per_epoch, experiment.trainer.epochs)
        return build_optimizer(t.optimizer, schedule, momentum=t.momentum, rho=t.rmsprop_alpha, epsilon=t.rmsprop_eps)

    def backbone_layers(self, model):
        """Every weighted layer but the class head (``predictions``; ``quant_predictions`` under QAT)."""
        from efficientnet_tf2.transfer import HEAD

        return [layer for layer in model.layers if layer.weights and not layer.name.endswith(HEAD)]

    def before_training(self, experiment, model, task, global_batch, logger, resumed: bool) -> None:
        """QAT from FP32 weights: activation ranges from ``--calibration-steps`` training batches."""
        from efficientnet_tf2 import qat

        steps = experiment.task.calibration_steps
        if resumed or not experiment.task.pretrained_from_file or not qat.is_quantized(model) or not steps:
            return
        method = experiment.task.calibration_method
        used = qat.calibrate(model, task.build_train_dataset(global_batch, epoch=0), steps, method)
        logger.log("PARAMETER", {"calibration_batches": used, "calibration_method": method})

    def describe(self, experiment) -> Dict[str, Any]:
        return {"image_size": experiment.data.image_size, "num_classes": experiment.data.num_classes,
                "lr": experiment.task.lr, "lr_batch": experiment.task.lr_batch}

    # ------------------------------------------------------------ inference
    def _architecture(self, experiment) -> Tuple[ClassifierConfig, int]:
        config = experiment.task.model
        config = config.replace(num_classes=experiment.data.num_classes or DEFAULT_NUM_CLASSES)
        return config, experiment.data.image_size or config.resolution

    def load_model(self, experiment, checkpoint: Optional[str], use_ema: bool = False):
        from common.training.checkpoint import restore_model_only
        from efficientnet_tf2.model import build_classifier

        config, size = self._architecture(experiment)
        model = build_classifier(config, input_shape=(size, size, 3), name=experiment.model.replace("-", "_"))
        if checkpoint:
            model = _quantize_if_needed(model, config)
            restore_model_only(checkpoint, model, use_ema=use_ema)
        elif experiment.task.pretrained_from_file:
            self._load_initial(experiment, model, name=model.name)
        else:
            _log.warning("--random-weights: %s is untrained", experiment.model)
        if not checkpoint and config.quantized:
            _log.warning("%s without a QAT checkpoint: activation ranges are uncalibrated", experiment.model)
        return _quantize_if_needed(model, config)

    def _load_initial(self, experiment, model, name: str) -> List[str]:
        """``--pretrained-from-file`` into ``model``: any source; another class count starts the head fresh
        (:mod:`efficientnet_tf2.transfer`). Returns the layers that start fresh."""
        from efficientnet_tf2.model import build_classifier
        from efficientnet_tf2.transfer import load_initial_weights

        config, _ = self._architecture(experiment)
        shape = tuple(int(d) for d in model.input_shape[1:])

        def build_like(num_classes: int):
            return build_classifier(config.replace(num_classes=num_classes), input_shape=shape, name=name + "_source")

        return load_initial_weights(model, experiment.task.pretrained_from_file, build_like)

    def class_names(self, experiment, options) -> List[str]:
        if getattr(options, "class_names", None):
            with open(options.class_names) as f:
                return [line.strip() for line in f if line.strip()]
        config, _ = self._architecture(experiment)
        return list(experiment.data.class_names) or [str(i) for i in range(config.num_classes)]

    def predict(self, experiment, model, paths: Sequence[str], out_dir: str, options: ClassifierInferOptions):
        """Prints the top-k classes of each image; writes ``<out_dir>/predictions.json``."""
        import json

        from efficientnet_tf2.inference import Classifier, format_predictions

        from common.io.data_check import for_each_image

        _, size = self._architecture(experiment)
        classifier = Classifier(model, size, self.class_names(experiment, options))
        out = os.path.join(out_dir, "predictions.json")
        if os.path.exists(out):
            os.remove(out)  # never left looking current if this run fails
        results = []

        def classify(path):
            preds = classifier.classify(path, top_k=options.top_k).pairs()
            print(format_predictions(path, preds), flush=True)
            results.append({"file": path, "top_k": [{"class": n, "probability": p} for n, p in preds]})

        failures = for_each_image(paths, classify)
        os.makedirs(out_dir, exist_ok=True)
        with open(out, "w") as f:
            json.dump(results, f, indent=1)
        print(f"predictions: {os.path.abspath(out)} ({len(results)} of {len(paths)} images)")
        return failures

    def check_export(self, experiment, options: ClassifierExportOptions) -> None:
        """``--quantize`` against ``--format`` and the model, before it is loaded: a SavedModel takes none, ONNX
        none or int8 (post-training, float models only: a QAT graph is int8 already), TFLite any, float models only
        (a QAT model: int8 with its trained ranges, :mod:`efficientnet_tf2.qat_tflite`)."""
        quantized = experiment.task.model.quantized
        if options.format == "tflite" and quantized and options.quantize not in ("none", "int8"):
            from efficientnet_tf2 import tflite_export

            raise SystemExit(f"error: {tflite_export.QAT_OTHER_KINDS}")
        if options.format == "onnx" and (options.quantize not in ("none", "int8") or
                                         (quantized and options.quantize != "none")):
            raise SystemExit(f"error: --format onnx takes --quantize int8 (post-training, float models) or none; "
                             f"received {options.quantize}{' for a QAT model (its graph is int8 already)' * quantized}")
        if options.format not in ("onnx", "tflite") and options.quantize != "none":
            raise SystemExit(f"error: --quantize {options.quantize} applies to --format tflite or onnx, not a SavedModel")

    def export(self, experiment, model, target: str, options: ClassifierExportOptions) -> str:
        """SavedModel (uint8 images or encoded bytes in, preprocessing inside) or ONNX (centre crops in)."""
        _, size = self._architecture(experiment)
        names = self.class_names(experiment, options)
        if options.format == "onnx":
            return self._export_onnx(experiment, model, target, size, names, options)
        if options.format == "tflite":
            return self._export_tflite(experiment, model, target, size, names, options)
        self.check_export(experiment, options)  # also for the Python API, which calls export directly
        from efficientnet_tf2.export import export_saved_model, verify_saved_model

        out = export_saved_model(model, target, image_size=size, class_names=names, overwrite=options.overwrite)
        print(f"SavedModel written to {os.path.abspath(out)} (signatures: serving_default, serving_bytes)")
        if options.verify:
            worst = verify_saved_model(model, out, size, options.verify)
            print(f"verified {len(options.verify)} image(s): max |SavedModel - Keras| probability difference = "
                  f"{worst:.2e}")
        return out

    def _export_onnx(self, experiment, model, out: str, size: int, names, options) -> str:
        """``out`` (``model.onnx``); ``--verify``: onnxruntime vs Keras (FP32: max |dprob| <= 1e-4; QAT: top-1)."""
        from efficientnet_tf2 import onnx_export

        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        opset = options.opset or onnx_export.MIN_OPSET
        quantized = experiment.task.model.quantized
        self.check_export(experiment, options)
        onnx_export.export_onnx(model, out, size, names, opset=opset)
        if options.quantize == "int8":
            crops = self._calibration_crops(experiment, options, size)
            float_file = out.replace(".onnx", ".fp32.onnx")
            os.replace(out, float_file)
            onnx_export.quantize_onnx(float_file, out, crops)
            os.remove(float_file)
        print(f"ONNX written to {os.path.abspath(out)} (opset {opset}; {'static int8 Q/DQ; ' * (options.quantize == 'int8')}"
              f"input uint8 [B, {size}, {size}, 3] centre crops; outputs probabilities, classes)")
        if options.verify:
            if options.quantize == "int8":  # post-training int8: rounding flips are reported, not refused
                result = onnx_export.compare_with_keras(model, out, onnx_export.centre_crops(options.verify, size))
            else:
                result = onnx_export.verify_onnx(model, out, size, options.verify, quantized)
            print(f"verified {len(options.verify)} image(s): max |ONNX - Keras| probability difference = "
                  f"{result['max_abs_diff']:.2e}, top-1 agreement {100 * result['top1_agreement']:.1f}%")
        return out

    def _export_tflite(self, experiment, model, out: str, size: int, names, options) -> str:
        """``out`` (``model.tflite`` + ``labels.txt``) at ``options.quantize``; ``--verify``: LiteRT vs Keras."""
        import time

        from efficientnet_tf2 import tflite_export

        self.check_export(experiment, options)
        quantized = experiment.task.model.quantized
        kind = "int8" if quantized else options.quantize
        calibration = self._calibration_crops(experiment, options, size) if kind == "int8" else None
        start = time.perf_counter()
        try:
            tflite_export.export_tflite(model, out, size, names, kind, calibration, self._float_builder(experiment))
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        print(f"TFLite written to {os.path.abspath(out)} ({kind}{' with the QAT ranges' * quantized}; "
              f"{os.path.getsize(out) / 2**20:.1f} MiB; {time.perf_counter() - start:.0f} s; input uint8 [B, {size}, "
              f"{size}, 3] centre crops; outputs probabilities, classes, logits)")
        if options.verify:
            result = tflite_export.verify_tflite(model, out, size, options.verify, kind)
            print(f"verified {len(options.verify)} image(s): max |TFLite - Keras| probability difference = "
                  f"{result['max_abs_diff']:.2e}, top-1 agreement {100 * result['top1_agreement']:.1f}%")
        return out

    def _float_builder(self, experiment):
        """A zero-argument builder of the experiment's architecture, unquantized (the QAT model's float twin)."""
        from efficientnet_tf2.model import build_classifier

        config, size = self._architecture(experiment)
        return lambda: build_classifier(config, input_shape=(size, size, 3), name=experiment.model.replace("-", "_"))

    def _calibration_crops(self, experiment, options, size: int):
        """uint8 ``[N, S, S, 3]`` centre crops of ``--calibration-images`` training images (logged)."""
        from efficientnet_tf2.onnx_export import centre_crops

        crops = centre_crops(self._calibration_paths(experiment, options), size,
                                           options.calibration_images)
        _log.info("int8 calibration on %d training images", len(crops))
        return crops

    def _calibration_paths(self, experiment, options) -> List[str]:
        """Image files of ``--calibration-data`` (default: the run's training split), in a seeded shuffled order."""
        import random

        from common.io.images import list_images

        root = options.calibration_data or experiment.data.data_dir
        if not root:
            raise SystemExit("error: --quantize int8 calibrates on training images: pass --calibration-data DIR "
                             "(or export from a run whose config.json names its data)")
        folder = os.path.join(root, "train") if os.path.isdir(os.path.join(root, "train")) else root
        try:
            paths = list_images([folder])
        except FileNotFoundError as err:
            raise SystemExit(f"error: --calibration-data: {err}") from None
        random.Random(0).shuffle(paths)
        return paths

    def info(self, experiment) -> Dict[str, Any]:
        import numpy as np

        from efficientnet_tf2.model import build_classifier

        config, size = self._architecture(experiment)
        model = build_classifier(config, input_shape=(size, size, 3))
        trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
        backbone = {k: v for k, v in dataclasses.asdict(config.backbone).items() if k != "blocks"}
        return {"model": experiment.model, "trainable_params": trainable, "total_params": int(model.count_params()),
                "input_size": size, "num_classes": config.num_classes, "dropout": config.dropout_rate,
                "quantized": config.quantized, "backbone": backbone}

    # ------------------------------------------------------------ benchmark
    def default_benchmark_size(self, experiment) -> int:
        return self._architecture(experiment)[1]

    def runtime_model(self, experiment, model, model_file: Optional[str], runtime: str):
        """``--runtime onnxruntime|openvino``: the checkpoint exported to ONNX (or ``model_file``); ``tflite``: to
        TFLite at FP32 (or ``model_file``, any quantization); run wherever the Keras model would be (same
        preprocessing code, so the same input pixels)."""
        if runtime == "tf":
            return model
        if runtime == "tflite":
            return self._tflite_model(experiment, model, model_file)
        from common.io import onnx_runtime
        from efficientnet_tf2 import onnx_export

        config, size = self._architecture(experiment)
        if runtime == "openvino":
            from common.io import openvino_runtime
            from efficientnet_tf2.runtimes import OpenVinoClassifier

            openvino_runtime.require_openvino()
            path = model_file or self._export_for_runtime(experiment, model, size)
            runner = OpenVinoClassifier(path, config.num_classes, precision=experiment.runtime.openvino_precision)
            _log.info(openvino_runtime.describe(runner.compiled, path))
            return runner
        onnx_runtime.require_onnxruntime()
        path = model_file or self._export_for_runtime(experiment, model, size)
        runner = onnx_export.OnnxClassifier(path, config.num_classes)
        _log.info(onnx_runtime.describe(runner.session, path))
        quantizers = onnx_export.count_ops(path).get("QuantizeLinear", 0)
        if quantizers:
            _log.info("quantization-aware graph: onnxruntime runs its %d QuantizeLinear/DequantizeLinear pairs "
                      "(int8 on this CPU; TensorRT is the int8 target for GPUs)", quantizers)
        return runner

    def _tflite_model(self, experiment, model, path: Optional[str]):
        """LiteRT on ``path`` or on the loaded model converted now (FP32; QAT models refused)."""
        import time

        from common.io import tflite_runtime
        from efficientnet_tf2 import tflite_export
        from efficientnet_tf2.runtimes import TfliteClassifier

        tflite_runtime.require_litert()
        config, size = self._architecture(experiment)
        if not path:
            start = time.perf_counter()
            calibration = self._runtime_calibration(experiment, size) if config.quantized else None
            path = tflite_export.export_to_temporary_file(model, size, "int8" if config.quantized else "none",
                                                          calibration, self._float_builder(experiment))
            _log.info("converted the loaded model to TFLite in %.1f s: %s (reuse it with --tflite-file)",
                      time.perf_counter() - start, path)
        runner = TfliteClassifier(path, config.num_classes)
        _log.info(tflite_runtime.describe(path, runner.threads))
        return runner

    def _runtime_calibration(self, experiment, size: int):
        """Calibration crops for converting a QAT model on the fly: the run's training images, else one line."""
        options = ClassifierExportOptions()  # its defaults: 200 images of the run's training split
        try:
            return self._calibration_crops(experiment, options, size)
        except SystemExit:
            raise SystemExit("error: --runtime tflite converts a QAT model to int8 calibrated on its training images, "
                             "and this run names none: export it with main.py export --format tflite "
                             "--calibration-data DIR and pass --tflite-file") from None

    def _export_for_runtime(self, experiment, model, size: int) -> str:
        """The loaded model as ``model.onnx`` in a fresh temporary folder (logged with its time)."""
        import time

        from efficientnet_tf2 import onnx_export

        start = time.perf_counter()
        path = onnx_export.export_to_temporary_file(model, size, self.class_names(experiment, None))
        _log.info("exported the loaded model to ONNX for onnxruntime in %.1f s: %s (reuse it with --onnx-file)",
                  time.perf_counter() - start, path)
        return path

    def runtime_benchmark_step(self, experiment, batch: int, runtime: str, int8: bool = False):
        """onnxruntime, OpenVINO or LiteRT on the model exported once per model name (dynamic batch), uint8
        ``[B, S, S, 3]`` crops; ``int8``: its int8 file (QAT: its own ranges; else calibrated)."""
        from efficientnet_tf2 import benchmark

        size = self.default_benchmark_size(experiment)
        classes = experiment.data.num_classes or DEFAULT_NUM_CLASSES
        if runtime == "openvino":
            return benchmark.make_openvino_infer_step(experiment.model, batch, size, num_classes=classes, int8=int8,
                                                      precision=experiment.runtime.openvino_precision)
        make = {"onnxruntime": benchmark.make_onnxruntime_infer_step, "tflite": benchmark.make_tflite_infer_step}
        return make[runtime](experiment.model, batch, size, num_classes=classes, int8=int8)

    def benchmark_step(self, experiment, kind: str, batch: int):
        """The shared trainer's real training step, or the real inference forward, on device-resident batches."""
        from efficientnet_tf2 import benchmark

        size = self.default_benchmark_size(experiment)
        classes = experiment.data.num_classes or DEFAULT_NUM_CLASSES
        make = benchmark.make_train_step if kind == "training" else benchmark.make_infer_step
        return make(experiment.model, batch, size, xla=experiment.runtime.xla, num_classes=classes)


# ---------------------------------------------------------------- helpers
def _quantize_if_needed(model, config: ClassifierConfig, fixed_ranges: bool = False):
    """``config.quantized``: the float ``model`` (FP32 weights already loaded) wrapped for quantization.

    ``fixed_ranges``: activation ranges stay as calibrated (fine-tuning from FP32 weights)
    instead of following a moving average of the training batches' ``max|x|``.
    """
    from efficientnet_tf2 import qat

    if not config.quantized or qat.is_quantized(model):
        return model
    return qat.quantize_model(model, qat.FIXED_RANGES if fixed_ranges else qat.DEFAULT_EMA_DECAY)


FAMILY = registry.register(ClassificationFamily())
