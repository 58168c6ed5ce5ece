"""PyTorch ``state_dict`` files -> Keras variables: reading, per-layer conversion, checks.

Shared by the NGC EfficientNet importer (:mod:`efficientnet_tf2.ngc`) and the torchvision
Mask R-CNN importer (:mod:`mrcnn_tf2.torchvision_import`). Each importer derives a table
``{state_dict key: TensorSpec}`` from the Keras model's own layers; this module converts
tensors by layer type:

* ``Conv2D``: ``[O, I, kh, kw]`` -> ``[kh, kw, I, O]``;
* ``DepthwiseConv2D``: ``[C, 1, kh, kw]`` -> ``[kh, kw, C, 1]``;
* ``Conv2DTranspose``: ``[I, O, kh, kw]`` -> ``[kh, kw, O, I]``;
* ``Dense``: ``[O, I]`` -> ``[I, O]``; biases as they are;
* ``BatchNormalization``: ``weight, bias, running_mean, running_var`` ->
  ``gamma, beta, moving_mean, moving_variance``.

``.pth``/``.pt`` files are read without torch by :mod:`common.io.pth` (a restricted unpickler:
tensors, storages and plain containers only); the same ``state_dict`` saved as ``.npz`` reads too.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import tf_keras as keras

from common.command.errors import UserError

STATE_DICT_EXTENSIONS = (".pth", ".pt", ".npz")
_MAX_NAMED = 5


class StateDictError(UserError, ValueError):
    """A ``state_dict`` does not fit the model (missing/extra keys, wrong shapes) or cannot be read (a user
    error: one line naming the file, e.g. a ``.pth`` without torch installed)."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Where one ``state_dict`` entry goes.

    Attributes:
      variable: the Keras variable it is assigned to.
      torch_shape: shape the entry must have in the checkpoint.
      convert: ``torch array -> Keras array`` (a transpose or reshape).
    """

    variable: object
    torch_shape: Tuple[int, ...]
    convert: Callable[[np.ndarray], np.ndarray]


def tensor_spec(variable, torch_axes: Optional[Tuple[int, ...]] = None) -> TensorSpec:
    """Spec of a variable stored transposed by ``torch_axes`` (Keras axes in PyTorch order)."""
    shape = tuple(int(d) for d in variable.shape)
    if torch_axes is None:
        return TensorSpec(variable, shape, lambda a: a)
    expected = tuple(shape[i] for i in torch_axes)
    inverse = tuple(int(i) for i in np.argsort(torch_axes))
    return TensorSpec(variable, expected, lambda a: np.transpose(a, inverse))


def layer_specs(layer: keras.layers.Layer, module: str) -> Dict[str, TensorSpec]:
    """``{state_dict key: TensorSpec}`` of one Keras layer mapped to PyTorch ``module``."""
    layers = keras.layers
    if isinstance(layer, layers.DepthwiseConv2D):
        specs = {"weight": tensor_spec(layer.depthwise_kernel, (2, 3, 0, 1))}
    elif isinstance(layer, layers.Conv2DTranspose):
        specs = {"weight": tensor_spec(layer.kernel, (3, 2, 0, 1))}
    elif isinstance(layer, layers.Conv2D):
        specs = {"weight": tensor_spec(layer.kernel, (3, 2, 0, 1))}
    elif isinstance(layer, layers.Dense):
        specs = {"weight": tensor_spec(layer.kernel, (1, 0))}
    elif isinstance(layer, layers.BatchNormalization):
        specs = {"weight": tensor_spec(layer.gamma), "bias": tensor_spec(layer.beta),
                 "running_mean": tensor_spec(layer.moving_mean), "running_var": tensor_spec(layer.moving_variance)}
    else:
        raise StateDictError(f"no PyTorch conversion for layer {layer.name} of type {type(layer).__name__}")
    if getattr(layer, "use_bias", False) and not isinstance(layer, layers.BatchNormalization):
        specs["bias"] = tensor_spec(layer.bias)
    return {f"{module}.{key}": spec for key, spec in specs.items()}


def strip_prefix(state: Mapping[str, np.ndarray], prefix: str = "module.") -> Dict[str, np.ndarray]:
    """Removes a DataParallel/DDP ``module.`` prefix from every key that has it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def unwrap_checkpoint(obj) -> Mapping:
    """The ``state_dict`` inside a training checkpoint dict (``state_dict``/``model`` key), else ``obj``."""
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            return unwrap_checkpoint(obj[wrapper])
    if not isinstance(obj, Mapping):
        raise StateDictError(f"expected a state_dict (a dict of tensors); found {type(obj).__name__}")
    return obj


def to_numpy(value) -> np.ndarray:
    """torch tensor (or array-like) -> numpy; floating tensors become float32."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def read_pth(path: str):
    """The object in a ``.pth``/``.pt`` file, read without torch and without running its pickle's code
    (:func:`common.io.pth.load`; tensors become numpy arrays)."""
    from common.io import pth

    try:
        return pth.load(path)
    except pth.PthError as err:
        raise StateDictError(str(err)) from None


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
    """The ``state_dict`` of a ``.pth``/``.pt`` or ``.npz`` file (no torch needed).

    Checkpoint wrappers (``{"state_dict": ...}``, ``{"model": ...}``) are
    unwrapped and a ``module.`` prefix is stripped. Keys starting with ``__``
    (fixture extras such as ``__logits__``) are dropped.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such checkpoint: {path}")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            raw = {k: archive[k] for k in archive.files}
    elif path.endswith((".pth", ".pt")):
        raw = read_pth(path)
    else:
        raise StateDictError(f"unknown checkpoint format {path!r}; expected one of {STATE_DICT_EXTENSIONS}")
    state = unwrap_checkpoint(raw)
    return strip_prefix({str(k): to_numpy(v) for k, v in state.items() if not str(k).startswith("__")})


def names(keys: List[str]) -> str:
    """First few ``keys``, and how many more."""
    shown = ", ".join(keys[:_MAX_NAMED])
    return shown + (f" (+{len(keys) - _MAX_NAMED} more)" if len(keys) > _MAX_NAMED else "")


def key_problems(keys, specs: Mapping[str, TensorSpec], mismatch: Callable[[str], Optional[str]]) -> List[str]:
    """Missing, unexpected and mis-shaped keys of a ``state_dict`` with ``keys`` against ``specs``.

    ``mismatch(key)`` describes a wrong shape of a present key (None: it fits).
    """
    keys = set(keys)
    missing = [k for k in specs if k not in keys]
    unexpected = sorted(keys - set(specs))
    shapes = [m for m in (mismatch(k) for k in specs if k in keys) if m]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {names(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {names(shapes)}")
    return problems
