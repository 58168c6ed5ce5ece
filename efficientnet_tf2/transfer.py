"""Initial classifier weights from any source, with another class count when fine-tuning.

Sources (``--pretrained``/``--pretrained-from-file``): NVIDIA NGC state_dicts (``.pth``/``.npz``),
keras.applications EfficientNet ``.h5`` files (imported by layer name, see :func:`load_keras_applications`),
Keras weight files of this project's models, and this project's training checkpoints or workspaces
(``model_best``). When the file's head has as many classes as the model, it loads as it is. Otherwise
the file is loaded into a model like the target with the file's class count, and every layer but the
class head (``predictions``) is copied across; the head starts fresh and one log line says so. A
layer other than the head that does not fit is an error naming it (nothing is assigned then).
"""
from __future__ import annotations

import logging
import os
import re
from typing import Dict, List, Optional

import numpy as np
import tf_keras as keras

from common.io.state_dict import STATE_DICT_EXTENSIONS, StateDictError

_log = logging.getLogger(__name__)
HEAD = "predictions"
#: keras.applications layer name suffix -> this project's (same block prefix ``block2b_``).
_KERAS_RENAMES = {"_dwconv": "_dw_conv", "_bn": "_dw_bn"}
_NORMALIZATION = re.compile(r"^normalization(_\d+)?$")  # Keras's input normalization (auto-numbered in a session)


class TransferError(StateDictError):
    """Initial weights do not fit the model beyond its class head (one line naming the file and the layers)."""


# ------------------------------------------------------------------ what a file holds
def _h5_root(handle):
    return handle["model_weights"] if "model_weights" in handle else handle


def _h5_layers(path: str) -> Dict[str, List[np.ndarray]]:
    """``{layer name: [weights in the layer's order]}`` of a Keras ``.h5`` weights or model file."""
    import h5py

    with h5py.File(path, "r") as handle:
        root = _h5_root(handle)
        out = {}
        for name in [n.decode() if isinstance(n, bytes) else n for n in root.attrs.get("layer_names", [])]:
            group = root[name]
            weight_names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])]
            if weight_names:
                out[name] = [np.asarray(group[w]) for w in weight_names]
        return out


def is_keras_applications_file(path: str) -> bool:
    """True for a keras.applications EfficientNet ``.h5`` (its layers say ``block1a_dwconv``)."""
    return path.endswith((".h5", ".hdf5")) and os.path.isfile(path) and "block1a_dwconv" in _h5_layers(path)


def file_num_classes(path: str) -> Optional[int]:
    """Classes of the head stored in ``path`` (None: no head found, e.g. a backbone-only file)."""
    if path.endswith(STATE_DICT_EXTENSIONS):
        from efficientnet_tf2.ngc import read_state_dict

        weight = read_state_dict(path).get("classifier.fc.weight")
        return None if weight is None else int(weight.shape[0])
    if path.endswith((".h5", ".hdf5", ".keras")) and os.path.isfile(path):
        head = _h5_layers(path).get(HEAD)
        return None if head is None else int(head[-1].shape[0])
    return _checkpoint_num_classes(path)


def _checkpoint_num_classes(path: str) -> Optional[int]:
    """The bias length of the last weighted layer of ``model/`` in a training checkpoint (the head)."""
    import tensorflow as tf

    from common.training.checkpoint import resolve

    biases = {}
    for name, shape in tf.train.list_variables(resolve(path)):
        parts = name.split("/")
        if len(parts) > 2 and parts[0] == "model" and parts[1].startswith("layer_with_weights-") and \
                parts[2] == "bias":
            biases[int(parts[1].split("-")[1])] = shape
    return int(biases[max(biases)][0]) if biases else None


# ------------------------------------------------------------------ loading
def load_file(model: keras.Model, path: str) -> None:
    """Loads ``path`` into ``model`` as it is (the same class count): NGC, keras.applications, Keras, checkpoint."""
    from efficientnet_tf2.ngc import load_ngc_checkpoint

    if path.endswith(STATE_DICT_EXTENSIONS):
        load_ngc_checkpoint(model, path)
    elif is_keras_applications_file(path):
        load_keras_applications(model, path)
    else:
        from common.training.checkpoint import load_weights_file

        load_weights_file(model, path)


def load_initial_weights(model: keras.Model, path: str, build_like) -> List[str]:
    """``--pretrained-from-file``: ``path`` into ``model``; a head of another class count starts fresh.

    Args:
      model: the classifier to initialise (head ``predictions``).
      path: weights file, checkpoint or workspace checkpoint folder.
      build_like: ``num_classes -> keras.Model``: a model like ``model`` with that many classes.

    Returns:
      Names of the layers that start fresh (``[]`` or ``["predictions"]``).
    """
    stored = file_num_classes(path)
    wanted = int(model.get_layer(HEAD).units)
    if stored is None or stored == wanted:
        load_file(model, path)
        return []
    source = build_like(stored)
    load_file(source, path)
    copied = copy_except_head(source, model, path)
    _log.info("fine-tuning: %d layers loaded from %s; starting fresh: %s (%d classes there, %d here)",
              copied, path, HEAD, stored, wanted)
    return [HEAD]


def copy_except_head(source: keras.Model, target: keras.Model, path: str) -> int:
    """Copies every weighted layer but the head from ``source`` to ``target`` by name; returns how many."""
    pairs, problems = [], []
    for layer in target.layers:
        if not layer.weights or layer.name == HEAD:
            continue
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            problems.append(f"{layer.name} (missing)")
            continue
        shapes = [tuple(w.shape) for w in layer.weights], [tuple(w.shape) for w in other.weights]
        if shapes[0] != shapes[1]:
            problems.append(f"{layer.name} {shapes[1]} -> {shapes[0]}")
        pairs.append((layer, other))
    if problems:
        raise TransferError(f"{path} does not fit beyond the class head: {'; '.join(problems[:5])}")
    for layer, other in pairs:
        layer.set_weights(other.get_weights())
    return len(pairs)


# ------------------------------------------------------------------ keras.applications
def _our_name(keras_name: str) -> str:
    """``block2b_dwconv`` -> ``block2b_dw_conv``; ``block2b_bn`` -> ``block2b_dw_bn``; others as they are."""
    if keras_name.startswith("block"):
        for suffix, ours in _KERAS_RENAMES.items():
            if keras_name.endswith(suffix) and keras_name.count("_") == 1:
                return keras_name[:-len(suffix)] + ours
    return keras_name


def load_keras_applications(model: keras.Model, path: str) -> int:
    """A ``tf_keras.applications.EfficientNetB*`` ``.h5`` into ``model``; all or nothing; returns layers set.

    The SE 1x1 convolutions ``[1, 1, I, O]`` become Dense kernels ``[I, O]``; the input ``normalization``
    layer has no counterpart (this project normalises pixels before the model, with ImageNet's mean/std).

    Raises:
      TransferError: a layer is missing on either side or a shape does not fit.
    """
    stored = {_our_name(k): v for k, v in _h5_layers(path).items() if not _NORMALIZATION.match(k)}
    targets = {layer.name: layer for layer in model.layers if layer.weights}
    missing, extra = sorted(set(targets) - set(stored)), sorted(set(stored) - set(targets))
    values, bad = {}, []
    for name in set(targets) & set(stored):
        shapes = [tuple(w.shape) for w in targets[name].weights]
        arrays = [a.reshape(s) if a.size == int(np.prod(s)) else a for a, s in zip(stored[name], shapes)]
        if [a.shape for a in arrays] != shapes:
            bad.append(f"{name} {[a.shape for a in stored[name]]} -> {shapes}")
        values[name] = arrays
    if missing or extra or bad:
        raise TransferError(f"{path} is not a keras.applications file of this model: missing {missing[:3]}, "
                            f"unexpected {extra[:3]}, mis-shaped {bad[:3]}")
    for name, arrays in values.items():
        targets[name].set_weights(arrays)
    _log.info("imported %d keras.applications layers from %s", len(values), path)
    return len(values)
