"""Process set-up shared by every command: seeds, precision, logging, strategy.

Kept out of module import time: nothing here runs until a command calls it.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random

import numpy as np


def set_seeds(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow (global seed) and enables TF RNG for Keras layers."""
    import tensorflow as tf
    import tf_keras as keras

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    # A seeded global generator: reproducible, and under op determinism (--deterministic,
    # TF_DETERMINISTIC_OPS=1) TensorFlow refuses to create an unseeded one (checkpoints save its state).
    tf.random.set_global_generator(tf.random.Generator.from_seed(seed))
    # Dropout/stochastic depth draw from tf.random.Generator variables owned by
    # the layers, so their state is checkpointed and a resumed run continues
    # the same random stream.
    keras.backend.experimental.enable_tf_random_generator()
    keras.utils.set_random_seed(seed)


def quiet_tensorflow(verbose: bool = False) -> None:
    """Hides TensorFlow's C++/absl start-up chatter (CUDA probing on CPU machines) unless ``verbose``.

    Must run before TensorFlow is imported; a user-set ``TF_CPP_MIN_LOG_LEVEL`` wins.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    for name in ("tensorflow", "absl", "h5py", "tf2onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and tf_keras with file descriptor 2 pointed at /dev/null.

    TensorFlow's C++ start-up lines (oneDNN notice, "Could not find cuda drivers", cuInit
    failures) are written before absl logging is initialised, so no log level hides them;
    errors raised by the import itself still surface as Python exceptions.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf
        import tf_keras  # noqa: F401

        # Probing for CUDA ("failed call to cuInit" on CPU machines) happens at the first
        # physical-device listing; it does not create the runtime context, so multi-worker
        # strategies can still be made afterwards.
        tf.config.list_physical_devices("GPU")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclasses.dataclass
class RunContext:
    """What :func:`setup_run` made: Keras policy name, strategy, chief flag, logger, log file, and the
    workspace lock of a training run's chief (:mod:`common.io.workspace`)."""

    policy: str
    strategy: object
    is_chief: bool
    logger: object
    log_file: str
    lock: object = None

    def release(self) -> None:
        """Closes the log (its file and TensorBoard writer) and gives the workspace back."""
        self.logger.close()
        if self.lock is not None:
            self.lock.release()


def configure_runtime(runtime) -> str:
    """Seeds, precision policy and TF32 of a :class:`common.command.config.RuntimeConfig`; returns the policy."""
    from common.training import precision

    set_seeds(runtime.seed)
    policy = precision.resolve_precision(precision=runtime.precision)
    precision.configure_precision(policy, tf32=runtime.tf32 and runtime.precision != "FP32")
    if runtime.eagerly or runtime.deterministic:
        import tensorflow as tf

        if runtime.eagerly:
            tf.config.run_functions_eagerly(True)
        if runtime.deterministic:
            tf.config.experimental.enable_op_determinism()
    return policy


def setup_run(runtime, workspace: str, lock: bool = False) -> RunContext:
    """Seeds, precision, strategy and logger of a training/evaluation command.

    Args:
      runtime: a :class:`common.command.config.RuntimeConfig`.
      workspace: the run's folder (created); the log goes to ``<workspace>/raport.json``
        unless ``runtime.log_file`` says otherwise.
      lock: the chief takes the workspace's lock before writing anything there (``train``).

    Raises:
      SystemExit: another live training run holds the workspace (one line naming it).
    """
    from common.training import distribution
    from common.io.logger import setup_logger

    try:  # first: MultiWorkerMirroredStrategy must configure collectives before TensorFlow's context starts
        strategy = distribution.create_strategy(runtime.dist, gpus=runtime.gpus)
    except (ImportError, ValueError) as err:  # --dist horovod without Horovod, --gpus beyond the machine
        raise SystemExit(f"error: {err}") from None
    policy = configure_runtime(runtime)
    chief = distribution.is_chief(strategy)
    os.makedirs(workspace, exist_ok=True)
    held = _lock(workspace) if lock and chief else None
    log_file = runtime.log_file or os.path.join(workspace, "raport.json")
    tensorboard = (runtime.log_tensorboard or os.path.join(workspace, "tensorboard")) if runtime.tensorboard else None
    logger = setup_logger(log_file=log_file, tensorboard_dir=tensorboard, is_chief=chief)
    return RunContext(policy, strategy, chief, logger, log_file, held)


def _lock(workspace: str):
    """The acquired :class:`common.io.workspace.WorkspaceLock` of ``workspace`` (SystemExit if it is busy)."""
    from common.io.workspace import WorkspaceBusy, WorkspaceLock

    try:
        return WorkspaceLock(workspace).acquire()
    except WorkspaceBusy as err:
        raise SystemExit(f"error: {err}") from None
