"""``main.py`` modes of the Mask R-CNN family: train, eval, infer, export, info.

Flags keep the spelling of NVIDIA's TF2 recipe (``--data_dir``, ``--model_dir``,
``--backbone_checkpoint``, ``--eval_file``, ``--epochs``, ``--steps_per_epoch``,
``--eval_samples``, ``--train_batch_size``, ``--eval_batch_size``, ``--seed``,
``--l2_weight_decay``, ``--init_learning_rate``, ``--learning_rate_values``,
``--learning_rate_boundaries``, ``--momentum``, ``--finetune_bn``,
``--use_synthetic_data``, ``--xla``, ``--amp``, ``--log_file``, ``--log_every``,
``--log_warmup_steps``, ``--log_tensorboard``, ``--eagerly``) plus
``--grad_accum_steps``, ``--clip_grad_norm`` and ``--optimizer``. Any model field can be set with ``--config name=value``
(dotted names of :class:`mrcnn_tf2.config.MaskRCNNConfig`).
"""
from __future__ import annotations

import argparse

from common.runtime import add_runtime_arguments

MODELS = ("mask-rcnn", "mask-rcnn-r50-fpn")


def list_models():
    """Names this family answers to."""
    return list(MODELS)


def add_arguments(parser: argparse.ArgumentParser, mode: str) -> None:
    """Adds the options of ``mode`` to ``parser``."""
    add_runtime_arguments(parser, log_flag=("--log_file", "--log-file"))
    _add_model_arguments(parser)
    if mode in ("train", "eval"):
        _add_data_arguments(parser)
    if mode == "train":
        _add_train_arguments(parser)
    if mode in ("eval", "infer", "export"):
        parser.add_argument("--checkpoint", default=None,
                            help="checkpoint folder or prefix (default: <model_dir>/model_best, else latest)")
    if mode == "eval":
        parser.add_argument("--eval_batch_size", type=int, default=8)
        parser.add_argument("--eval_samples", type=int, default=None, help="cap on evaluated images")
    if mode == "infer":
        parser.add_argument("images", nargs="+", help="image files or folders (JPEG/PNG)")
        parser.add_argument("--output_dir", default=None, help="default: <model_dir>/predictions")
        parser.add_argument("--score_threshold", type=float, default=0.5, help="drawn detections")
    if mode == "export":
        parser.add_argument("--export_dir", default=None, help="default: <model_dir>/saved_model")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
        parser.add_argument("--verify", nargs="*", default=None, metavar="IMAGE",
                            help="reload the SavedModel and compare it with Keras on these images")


def _add_model_arguments(parser):
    group = parser.add_argument_group("model")
    group.add_argument("--model_dir", "--workspace", dest="model_dir", default="./results",
                       help="checkpoints, logs, config and exports go here")
    group.add_argument("--image_size", type=int, nargs=2, default=None, metavar=("SHORT", "LONG"),
                       help="resize target: short side, long side max (default 832 1344; small data: e.g. 128 128)")
    group.add_argument("--finetune_bn", action="store_true", help="train BatchNorm (default: frozen)")
    group.add_argument("--no_custom_ops", action="store_true",
                       help="plain-TF ops instead of the fused custom_ops kernels (also: MRCNN_NO_CUSTOM_OPS=1)")
    group.add_argument("--config", dest="overrides", nargs="*", default=[], metavar="NAME=VALUE",
                       help="model config overrides, e.g. rpn.post_nms_topk_test=500 backbone.width_multiplier=0.5")


def _add_data_arguments(parser):
    group = parser.add_argument_group("data")
    group.add_argument("--data_dir", default=None,
                       help="TFRecords (train*/val*.tfrecord) or a COCO layout (annotations/ + images)")
    group.add_argument("--eval_file", default=None, help="validation annotation JSON (COCO ground truth)")
    group.add_argument("--eval_images", default=None, help="validation image folder (COCO JSON input)")
    group.add_argument("--train_annotations", default=None, help="training annotation JSON (custom data)")
    group.add_argument("--train_images", default=None, help="training image folder (custom data)")
    group.add_argument("--use_synthetic_data", action="store_true", help="random inputs (testing/benchmarks)")


def _add_train_arguments(parser):
    group = parser.add_argument_group("training (NVIDIA defaults)")
    group.add_argument("--epochs", type=int, default=12)
    group.add_argument("--steps_per_epoch", type=int, default=None,
                       help="default: training images // global batch")
    group.add_argument("--train_batch_size", type=int, default=4, help="per device")
    group.add_argument("--eval_batch_size", type=int, default=8)
    group.add_argument("--eval_samples", type=int, default=None, help="cap on evaluated images")
    group.add_argument("--no_eval", action="store_true", help="skip the COCO evaluation after training")
    group.add_argument("--l2_weight_decay", type=float, default=1e-4)
    group.add_argument("--init_learning_rate", type=float, default=0.0, help="warm-up starts here")
    group.add_argument("--learning_rate_values", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4],
                       help="per-image rates, multiplied by the global batch size")
    group.add_argument("--learning_rate_boundaries", type=float, nargs="+", default=[0.3, 8.0, 10.0],
                       help="epochs: end of warm-up, then each decay")
    group.add_argument("--momentum", type=float, default=0.9)
    group.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                       help="sgd with --momentum (NVIDIA); adam trains much faster from random weights")
    group.add_argument("--grad_accum_steps", type=int, default=1, help="batches per optimizer update")
    group.add_argument("--clip_grad_norm", type=float, default=None, help="clip gradients to this global norm")
    group.add_argument("--backbone_checkpoint", default=None,
                       help="ImageNet ResNet-50 weights: Keras .h5 (keras.applications names) or TF checkpoint")
    group.add_argument("--resume", default=None, help="continue from a checkpoint (or model_dir)")
    group.add_argument("--log_every", type=int, default=100, help="iterations between log lines")
    group.add_argument("--log_warmup_steps", type=int, default=100, help="steps left out of throughput")
    group.add_argument("--eagerly", action="store_true", help="run eagerly (debugging only, slow)")
    group.add_argument("--no_checkpoints", action="store_true")


def run(mode: str, args: argparse.Namespace) -> int:
    """Dispatches to the mode's implementation (imports TensorFlow lazily)."""
    from common.runtime import quiet_tensorflow

    quiet_tensorflow()
    from mrcnn_tf2 import commands

    commands.configure_custom_ops(args, mode)
    return {"train": commands.train, "eval": commands.evaluate, "infer": commands.infer,
            "export": commands.export, "info": commands.info}[mode](args)
