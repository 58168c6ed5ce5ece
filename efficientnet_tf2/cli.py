"""``main.py`` modes of the EfficientNet family: train, eval, infer, export, info.

Every flag of seed 003 that applies keeps its spelling (``--epochs``,
``-b/--batch-size``, ``--lr``, ``--warmup``, ``--label-smoothing``,
``--mixup``, ``--amp``, ``--static-loss-scale``, ``--workspace``,
``--raport-file``, ``--resume``, ``--pretrained-from-file``,
``--no-checkpoints``, ``--num-classes``, ``--data-backend``, ``--prof``,
``--seed``, ``--image-size``). Unset recipe flags take the variant's
defaults from :mod:`efficientnet_tf2.recipe`.
"""
from __future__ import annotations

import argparse
import json
import os

from common.runtime import add_runtime_arguments
from efficientnet_tf2 import registry
from efficientnet_tf2.recipe import recipe_for


def list_models():
    """Names this family answers to."""
    return registry.list_models()


def add_arguments(parser: argparse.ArgumentParser, mode: str) -> None:
    """Adds the options of ``mode`` to ``parser``."""
    add_runtime_arguments(parser)
    _add_model_arguments(parser)
    if mode in ("train", "eval"):
        _add_data_arguments(parser)
    if mode == "train":
        _add_train_arguments(parser)
    if mode in ("eval", "infer", "export"):
        parser.add_argument("--checkpoint", "--resume", dest="checkpoint", default=None,
                            help="training checkpoint (workspace, checkpoint-latest/ or model_best/ dir)")
    if mode == "eval":
        parser.add_argument("--use-ema", action="store_true", help="evaluate the EMA weights")
        parser.add_argument("--eval-steps", type=int, default=None, help="cap on validation batches")
    if mode == "infer":
        parser.add_argument("images", nargs="+", help="image files or folders")
        parser.add_argument("--precision", default="FP32", choices=["AMP", "FP32", "TF32", "BF16"])
        parser.add_argument("--top-k", type=int, default=5)
        parser.add_argument("--class-names", default=None, help="file with one class name per line")
    if mode == "export":
        parser.add_argument("--export-dir", default=None,
                            help="output folder (default: <workspace>/saved_model for savedmodel, "
                                 "<workspace> for onnx, which writes model.onnx there)")
        parser.add_argument("--format", default="savedmodel", choices=["savedmodel", "onnx"],
                            help="savedmodel: uint8 images of any size or encoded bytes in, resize+crop+normalise "
                                 "inside; onnx (tf2onnx): uint8 [B, S, S, 3] images already resized (short side "
                                 "S+32) and centre-cropped to S, normalised inside; outputs probabilities and "
                                 "classes; QAT models get int8 QuantizeLinear/DequantizeLinear pairs")
        parser.add_argument("--opset", type=int, default=13, help="ONNX opset (>= 13, needed for per-channel Q/DQ)")
        parser.add_argument("--verify", nargs="*", default=None, metavar="IMAGE",
                            help="compare the export with Keras on these images (SavedModel/FP32 ONNX: max "
                                 "|dprob| <= 1e-4; QAT ONNX: same top-1)")


def _add_model_arguments(parser):
    group = parser.add_argument_group("model")
    group.add_argument("--num-classes", type=int, default=None,
                       help="classifier width (default: number of class folders, else 1000)")
    group.add_argument("--image-size", type=int, default=None, help="input resolution (default: variant's)")
    group.add_argument("--padding", default="same", choices=["same", "symmetric"],
                       help="'symmetric' = k//2 on every side as NVIDIA's PyTorch model (for NGC weights)")
    group.add_argument("--bn-momentum", type=float, default=None,
                       help="BatchNorm moving-average momentum, Keras convention (default: 0.99; "
                            "0.9 suits short runs on small data)")
    group.add_argument("--pretrained-from-file", default=None,
                       help="initial weights: Keras .weights.h5/.h5, TF checkpoint, or an NVIDIA NGC PyTorch "
                            "state_dict (.pth/.pt needs torch, or .npz; use --padding symmetric)")
    group.add_argument("--workspace", default="./workspace", help="checkpoints, logs and exports go here")
    group.add_argument("-b", "--batch-size", type=int, default=None, help="per-device batch (default: recipe)")


def _add_data_arguments(parser):
    group = parser.add_argument_group("data")
    group.add_argument("data", nargs="?", default=None, help="ImageFolder root with train/ and val/")
    group.add_argument("--data-dir", dest="data_dir", default=None, help="same as the positional DATA")
    group.add_argument("--data-backend", default="tfdata", choices=["tfdata", "dali-cpu", "dali-gpu", "synthetic"],
                       help="input pipeline: tf.data, NVIDIA DALI on CPU or GPU, or 'synthetic' for benchmarks")
    group.add_argument("--augmentation", default=None, choices=["autoaugment", "none"],
                       help="training augmentation on top of crop+flip (default: autoaugment)")


def _add_train_arguments(parser):
    group = parser.add_argument_group("training (unset values take the seed-003 recipe)")
    group.add_argument("--epochs", type=int, default=None)
    group.add_argument("--steps-per-epoch", type=int, default=None, help="cap on steps per epoch")
    group.add_argument("--lr", type=float, default=None, help="learning rate for --lr-batch images")
    group.add_argument("--lr-batch", type=int, default=None, help="batch size --lr refers to (4096)")
    group.add_argument("--warmup", type=int, default=None, help="linear warm-up epochs")
    group.add_argument("--lr-schedule", default=None, choices=["cosine", "linear"],
                       help="decay after warm-up (default: recipe's; linear for efficientnet-quant-b4)")
    group.add_argument("--calibration-steps", type=int, default=8,
                       help="efficientnet-quant-*: training batches that set the activation ranges "
                            "before fine-tuning from --pretrained-from-file; 0 skips it")
    group.add_argument("--calibration-method", default="percentile", choices=["max", "mean", "percentile"],
                       help="activation range from the calibration batches (percentile: mean of the "
                            "per-batch 99.99th percentile of |x|)")
    group.add_argument("--optimizer", default=None, choices=["rmsprop", "sgd", "adam"])
    group.add_argument("--momentum", type=float, default=None)
    group.add_argument("--rmsprop-alpha", type=float, default=None)
    group.add_argument("--rmsprop-eps", type=float, default=None)
    group.add_argument("--weight-decay", type=float, default=None)
    group.add_argument("--label-smoothing", type=float, default=None)
    group.add_argument("--mixup", type=float, default=None, help="MixUp alpha (0 disables)")
    group.add_argument("--use-ema", type=float, nargs="?", const=0.9999, default=None, metavar="DECAY",
                       help="keep an EMA of the weights (default decay 0.9999), evaluated and checkpointed")
    group.add_argument("--resume", default=None, help="continue from a checkpoint (or workspace dir)")
    group.add_argument("--no-checkpoints", action="store_true", help="do not write checkpoints")
    group.add_argument("--prof", type=int, default=None, metavar="N", help="stop each epoch after N steps")
    group.add_argument("--log-every", "--print-freq", type=int, default=20, help="iterations between log lines")
    group.add_argument("--training-only", action="store_true", help="skip validation")
    group.add_argument("--eval-steps", type=int, default=None, help="cap on validation batches")


def run(mode: str, args: argparse.Namespace) -> int:
    """Dispatches to the mode's implementation (imports TensorFlow lazily)."""
    from common.runtime import quiet_tensorflow

    quiet_tensorflow()
    if mode == "info":
        return _info(args)
    from efficientnet_tf2 import commands

    return {"train": commands.train, "eval": commands.evaluate, "infer": commands.infer,
            "export": commands.export}[mode](args, recipe_for(args.model))


def _info(args) -> int:
    """Prints model facts as JSON (parameter counts, input size, endpoints)."""
    import numpy as np

    from efficientnet_tf2.model import build_efficientnet

    config = registry.get_config(args.model, num_classes=args.num_classes or 1000, padding=args.padding)
    size = args.image_size or config.resolution
    model = build_efficientnet(config, input_shape=(size, size, 3))
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    info = {"model": args.model, "trainable_params": trainable, "total_params": int(model.count_params()),
            "input_size": size, "num_classes": config.num_classes, "dropout": config.dropout_rate,
            "drop_connect": config.drop_connect_rate, "padding": config.padding, "wide_se": config.wide_se,
            "width_coefficient": config.width_coefficient, "depth_coefficient": config.depth_coefficient}
    print(json.dumps(info, indent=1))
    return 0
