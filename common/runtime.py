"""Process set-up shared by every command: seeds, precision, logging, strategy.

Kept out of module import time: nothing here runs until a command calls it.
"""
from __future__ import annotations

import argparse
import logging
import os
import random

import numpy as np


# Same as common.distribution.STRATEGIES (not imported: that would load TensorFlow for --help).
DIST_CHOICES = ("auto", "none", "one_device", "mirrored", "multiworker", "horovod")


def add_runtime_arguments(parser: argparse.ArgumentParser, log_flag=("--raport-file", "--log-file", "--log_file")):
    """Flags every mode understands: precision, XLA, seed, logging, distribution."""
    group = parser.add_argument_group("runtime")
    group.add_argument("--amp", action="store_true", help="mixed precision float16 (dynamic loss scaling)")
    group.add_argument("--bf16", action="store_true", help="mixed precision bfloat16 (no loss scaling)")
    group.add_argument("--static-loss-scale", "--static_loss_scale", type=float, default=None,
                       help="static loss scale for --amp (default: dynamic)")
    group.add_argument("--no-tf32", dest="tf32", action="store_false", default=True,
                       help="disable TensorFloat-32 math on Ampere+ GPUs")
    group.add_argument("--xla", action="store_true", help="compile train/eval steps with XLA (jit_compile)")
    group.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    group.add_argument(*log_flag, dest="log_file", default=None,
                       help="DLLogger JSON lines file (default: <workspace>/raport.json)")
    group.add_argument("--log-tensorboard", "--log_tensorboard", dest="log_tensorboard", default=None,
                       metavar="DIR", help="also write TensorBoard summaries to DIR")
    group.add_argument("--dist", default="auto", choices=DIST_CHOICES,
                       help="distribution strategy: auto (mirrored over >1 GPU), none, one_device, mirrored "
                            "(all local GPUs), multiworker (TF_CONFIG; see scripts/launch.py), horovod "
                            "(one process per GPU under horovodrun)")
    return group


def set_seeds(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow (global seed) and enables TF RNG for Keras layers."""
    import tensorflow as tf
    import tf_keras as keras

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    # Dropout/stochastic depth draw from tf.random.Generator variables owned by
    # the layers, so their state is checkpointed and a resumed run continues
    # the same random stream.
    keras.backend.experimental.enable_tf_random_generator()
    keras.utils.set_random_seed(seed)


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up chatter unless the user set TF_CPP_MIN_LOG_LEVEL."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def setup_run(args, workspace: str):
    """Seeds, precision policy, strategy and logger shared by every training/eval command.

    Reads ``args.seed``, ``args.amp``, ``args.bf16``, ``args.tf32``, ``args.dist``,
    ``args.log_file`` and ``args.log_tensorboard`` (see :func:`add_runtime_arguments`).

    Returns:
      ``(policy, strategy, is_chief, logger, log_file)``.
    """
    from common import distribution, precision
    from common.logger import setup_logger

    set_seeds(0 if args.seed is None else args.seed)
    policy = precision.resolve_precision(args.amp, args.bf16, getattr(args, "precision", None))
    precision.configure_precision(policy, tf32=args.tf32)
    if getattr(args, "eagerly", False):
        import tensorflow as tf

        tf.config.run_functions_eagerly(True)
    try:
        strategy = distribution.create_strategy(args.dist)
    except ImportError as err:  # --dist horovod without Horovod
        raise SystemExit(f"error: {err}") from err
    chief = distribution.is_chief(strategy)
    os.makedirs(workspace, exist_ok=True)
    log_file = args.log_file or os.path.join(workspace, "raport.json")
    logger = setup_logger(log_file=log_file, tensorboard_dir=args.log_tensorboard, is_chief=chief)
    return policy, strategy, chief, logger, log_file

