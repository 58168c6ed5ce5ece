"""Training checkpoints: ``checkpoint-latest`` and ``model_best``, written atomically.

Layout of a workspace::

    <workspace>/checkpoint-latest/ckpt.index, ckpt.data-*, meta.json
    <workspace>/model_best/...

A checkpoint is first written to a temporary sibling folder and then moved
into place with ``os.replace``, so an interrupted save never leaves a broken
``checkpoint-latest``: either the old or the new one is there (the old one
stays as ``<name>.old`` during the swap and is found by :func:`resolve`).
Opening a workspace (:class:`CheckpointManager`) finishes what a killed save left:
temporary folders are deleted and a lone ``<name>.old`` is moved back.

The trainer writes ``model_best`` *before* ``checkpoint-latest`` (see
:meth:`common.training.trainer.Trainer`), so a kill between the two resumes from the previous
epoch, which is then redone and its best copy rewritten.

``tests/common/fault_injector.py`` kills a real run at each step of a save (files written,
old copy moved aside, new one in place) from outside this module.
The saved objects are whatever the trainer passes (model, optimizer with its
iteration counter and hence LR schedule position, EMA, epoch, RNG states).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import glob
import random
import shutil
import tempfile
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from common.command.errors import CheckpointError

_log = logging.getLogger(__name__)

LATEST, BEST, PREFIX, META = "checkpoint-latest", "model_best", "ckpt", "meta.json"
def resolve(path: str) -> str:
    """Checkpoint prefix (``.../ckpt``) for a workspace, checkpoint folder or prefix.

    Raises:
      FileNotFoundError: naming ``path`` when nothing restorable is there.
    """
    path = os.path.abspath(path.rstrip("/"))
    candidates = [path, os.path.join(path, LATEST), os.path.join(path, LATEST + ".old"),
                  os.path.join(path, BEST), path + ".old"]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, PREFIX + ".index")):
            return os.path.join(folder, PREFIX)
    if os.path.isfile(path + ".index"):
        return path
    raise FileNotFoundError(f"no checkpoint found at {path} (expected {LATEST}/ or {BEST}/ with "
                            f"{PREFIX}.index, or a checkpoint prefix)")


def read_meta(path: str) -> Dict[str, object]:
    """``meta.json`` next to the checkpoint at ``path`` (empty dict if absent).

    Raises:
      CheckpointError: the file is not readable JSON (named).
    """
    from common.command.config import read_json_object

    meta_file = os.path.join(os.path.dirname(resolve(path)), META)
    return read_json_object(meta_file) if os.path.isfile(meta_file) else {}


def damage(err: BaseException) -> str:
    """The first line of a checkpoint read error, short (TensorFlow's messages run to pages)."""
    text = str(getattr(err, "message", None) or err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def restore_candidates(path: str) -> List[str]:
    """Prefixes to try for ``--resume path``, best first: a workspace's ``checkpoint-latest``, its ``.old`` copy,
    then ``model_best``; ``<workspace>/checkpoint-latest`` given explicitly falls back the same way; any other
    path is itself only."""
    path = os.path.abspath(path.rstrip("/"))
    if os.path.basename(path) in (LATEST, LATEST + ".old"):
        folders = [path, os.path.join(os.path.dirname(path), LATEST + ".old"), os.path.join(os.path.dirname(path), BEST)]
    elif os.path.isdir(path) and not os.path.isfile(os.path.join(path, PREFIX + ".index")):
        folders = [os.path.join(path, name) for name in (LATEST, LATEST + ".old", BEST)]
    else:
        return [resolve(path)]
    found = [os.path.join(f, PREFIX) for f in dict.fromkeys(folders) if os.path.isfile(os.path.join(f, PREFIX + ".index"))]
    return found or [resolve(path)]


class CheckpointManager:
    """Writes/restores ``checkpoint-latest`` and ``model_best`` in ``workspace``.

    Args:
      workspace: output folder.
      trackables: name -> trackable (model, optimizer, EMA, variables, generators).
      is_chief: non-chief workers write to a scratch folder that is deleted
        (every worker must take part in saving distributed variables).
    """

    def __init__(self, workspace: str, trackables: Dict[str, object], is_chief: bool = True):
        self.workspace = workspace
        self.is_chief = is_chief
        self.checkpoint = tf.train.Checkpoint(**trackables)
        if is_chief:
            recover_workspace(workspace)

    def save_latest(self, meta: Dict[str, object]) -> Optional[str]:
        return self._save(LATEST, meta)

    def save_best(self, meta: Dict[str, object]) -> Optional[str]:
        return self._save(BEST, meta)

    def _save(self, name: str, meta: Dict[str, object]) -> Optional[str]:
        os.makedirs(self.workspace, exist_ok=True)
        # Non-chief workers write to the system temp folder (then delete it): the
        # workspace only ever holds the chief's files.
        tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=self.workspace if self.is_chief else None)
        try:
            self.checkpoint.write(os.path.join(tmp, PREFIX))
            if not self.is_chief:
                return None
            with open(os.path.join(tmp, META), "w") as f:
                json.dump(meta, f, indent=1, default=float)
            final = os.path.join(self.workspace, name)
            _swap_into_place(tmp, final)
            return os.path.join(final, PREFIX)
        except (tf.errors.ResourceExhaustedError, OSError) as err:  # a full disk, a read-only or vanished folder
            if isinstance(err, OSError) and err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise
            raise CheckpointError(f"cannot save {name} in {self.workspace}: {damage(err)}; the previous checkpoints "
                                  f"there are intact: free space (or fix the folder) and --resume {self.workspace}"
                                  ) from None
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)

    def restore(self, path: str) -> Dict[str, object]:
        """Restores every trackable from ``path``; returns the checkpoint's meta. A damaged checkpoint (data,
        index or ``meta.json``) is named and the next intact copy used (:func:`restore_candidates`).

        Raises:
          CheckpointError: no copy could be read (each named with its damage).
        """
        damaged = []
        for prefix in restore_candidates(path):
            try:
                meta = read_meta(prefix)
                self.checkpoint.read(prefix).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError, IndexError, CheckpointError) as err:
                damaged.append(f"{os.path.dirname(prefix)}: {damage(err)}")
                _log.warning("checkpoint %s cannot be restored (%s)", os.path.dirname(prefix), damage(err))
                continue
            if damaged:
                _log.warning("resumed from the intact copy %s instead", os.path.dirname(prefix))
            _log.info("restored training state from %s", prefix)
            return meta
        raise CheckpointError(f"--resume {path}: no checkpoint there can be restored: " + "; ".join(damaged))


def _swap_into_place(tmp: str, final: str) -> None:
    """Moves folder ``tmp`` to ``final``; ``final`` is never missing without a ``.old`` copy."""
    old = final + ".old"
    if os.path.isdir(old):
        shutil.rmtree(old)
    if os.path.isdir(final):
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def recover_workspace(workspace: str) -> List[str]:
    """Finishes the saves a kill interrupted: deletes temporary folders, moves a lone ``.old`` back.

    Returns:
      What was done, one line per folder (also logged).
    """
    done = []
    for tmp in sorted(glob.glob(os.path.join(glob.escape(workspace), ".*.tmp-*"))):
        shutil.rmtree(tmp, ignore_errors=True)
        done.append(f"deleted the unfinished save {tmp}")
    for name in (LATEST, BEST):
        final, old = os.path.join(workspace, name), os.path.join(workspace, name + ".old")
        if os.path.isdir(old) and not os.path.isdir(final):
            os.replace(old, final)
            done.append(f"restored {final} from {old} (a save was interrupted)")
        elif os.path.isdir(old):
            shutil.rmtree(old, ignore_errors=True)
            done.append(f"deleted the superseded {old}")
    for line in done:
        _log.warning("%s", line)
    return done


def restore_model_only(path: str, model, use_ema: bool = False) -> Dict[str, object]:
    """Loads only the model weights (or the EMA weights) of a training checkpoint."""
    prefix = resolve(path)
    if use_ema:
        from common.training.ema import ModelEMA

        ema = ModelEMA(model)
        tf.train.Checkpoint(model=model, ema=ema).read(prefix).expect_partial()
        if not _has_ema(prefix):
            raise ValueError(f"--use-ema: checkpoint {prefix} has no EMA weights (train with --use-ema)")
        for shadow, var in zip(ema.shadow, model.variables):
            var.assign(shadow)
    else:
        try:
            status = tf.train.Checkpoint(model=model).read(prefix)
            status.expect_partial()
            status.assert_existing_objects_matched()
        except (tf.errors.OpError, IndexError) as err:  # DataLossError, short reads: damaged files (shape
            # mismatches stay ValueErrors)
            raise CheckpointError(f"checkpoint {os.path.dirname(prefix)} cannot be read ({damage(err)}): the files "
                                  "are damaged; pass another copy with --checkpoint (e.g. the run's "
                                  f"{LATEST} or {BEST})") from None
    return read_meta(prefix)


def _has_ema(prefix: str) -> bool:
    return any(name.startswith("ema/") for name, _ in tf.train.list_variables(prefix))


def load_weights_file(model, path: str) -> None:
    """Initial weights from a Keras ``.h5``/``.weights.h5`` file or a training checkpoint.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: the file's weights do not fit ``model`` (message names the file).
    """
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise FileNotFoundError(f"--pretrained-from-file: no such file: {path}")
    try:
        if path.endswith((".h5", ".keras", ".hdf5")):
            model.load_weights(path)
        else:
            restore_model_only(path, model)
    except CheckpointError:
        raise
    except (ValueError, tf.errors.OpError, AssertionError) as err:
        raise ValueError(f"cannot load weights from {path} into {model.name}: {err}") from err


def save_rng_state() -> Dict[str, object]:
    """Python, NumPy and TF global-generator states as JSON-friendly values."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    return {"python": [version, list(state), gauss],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "tf_global": tf.random.get_global_generator().state.numpy().tolist()}


def restore_rng_state(state: Dict[str, object]) -> None:
    """Inverse of :func:`save_rng_state`."""
    if "python" in state:
        version, values, gauss = state["python"]
        random.setstate((version, tuple(values), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "tf_global" in state:
        tf.random.get_global_generator().state.assign(np.asarray(state["tf_global"], dtype=np.int64))
