"""Import NVIDIA NGC (PyTorch) EfficientNet checkpoints into the Keras models.

NVIDIA's PyTorch EfficientNet (the NGC ``efficientnet-b0/-b4``, ``-widese-b0/-b4``
and ``-quant-b0/-b4`` weights) stores a ``state_dict`` whose keys follow its
module tree::

    stem.{conv,bn}                       -> stem_{conv,bn}
    layers.<S>.block<R>.expand.{conv,bn} -> block<S+1><r>_expand_{conv,bn}
    layers.<S>.block<R>.depsep.{conv,bn} -> block<S+1><r>_dw_{conv,bn}
    layers.<S>.block<R>.se.squeeze       -> block<S+1><r>_se_reduce
    layers.<S>.block<R>.se.expand        -> block<S+1><r>_se_expand
    layers.<S>.block<R>.proj.{conv,bn}   -> block<S+1><r>_project_{conv,bn}
    features.{conv,bn}                   -> top_{conv,bn}
    classifier.fc                        -> predictions

(``<r>`` is the letter of repeat ``R``: 0 -> ``a``.) The table of expected keys is
derived from the Keras model's own layers, so every registered variant is
covered by the same code. Tensors are converted by layer type:

* ``Conv2D``: ``[O, I, kh, kw]`` -> ``[kh, kw, I, O]``;
* ``DepthwiseConv2D``: ``[C, 1, kh, kw]`` -> ``[kh, kw, C, 1]``;
* ``Dense``: ``[O, I]`` (or a 1x1 conv ``[O, I, 1, 1]``, as the TensorRT-friendly
  SE of the quant models) -> ``[I, O]``; bias ``[O]`` as is;
* ``BatchNormalization``: ``weight, bias, running_mean, running_var`` ->
  ``gamma, beta, moving_mean, moving_variance`` (eps 1e-3 on both sides).

Quantizer entries (``*._input_quantizer._amax``, ``*._weight_quantizer._amax``,
...) are not FP32 weights: they are set aside and returned, so that a QAT model
can use them. ``num_batches_tracked`` is ignored.

Exact outputs need the model built with ``padding="symmetric"``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import tf_keras as keras

_log = logging.getLogger(__name__)

NGC_EXTENSIONS = (".pth", ".pt", ".npz")
IGNORED_SUFFIXES = ("num_batches_tracked",)
_QUANTIZER = re.compile(r"(^|\.)[^.]*_quantizer(\.|$)")
_BLOCK = re.compile(r"^block(\d+)([a-z])_(expand_conv|expand_bn|dw_conv|dw_bn|project_conv|project_bn"
                    r"|se_reduce|se_expand)$")
_BLOCK_PARTS = {"expand_conv": "expand.conv", "expand_bn": "expand.bn", "dw_conv": "depsep.conv",
                "dw_bn": "depsep.bn", "project_conv": "proj.conv", "project_bn": "proj.bn",
                "se_reduce": "se.squeeze", "se_expand": "se.expand"}
_FIXED = {"stem_conv": "stem.conv", "stem_bn": "stem.bn", "top_conv": "features.conv",
          "top_bn": "features.bn", "predictions": "classifier.fc"}
_MAX_NAMED = 5


class NgcCheckpointError(ValueError):
    """The checkpoint does not fit the model (missing/extra keys, wrong shapes) or cannot be read."""


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


@dataclasses.dataclass(frozen=True)
class NgcImport:
    """Result of an import.

    Attributes:
      assigned: ``state_dict`` key -> Keras variable name, for every weight set.
      quantizers: quantizer entries of a quant checkpoint, ``{key: amax array}``
        (keys as in the checkpoint, ``module.`` stripped); empty for FP32 ones.
    """

    assigned: Dict[str, str]
    quantizers: Dict[str, np.ndarray]

    def quantizers_by_layer(self, model: keras.Model) -> Dict[str, Dict[str, np.ndarray]]:
        """Quantizer entries grouped by Keras layer: ``{"block2a_expand_conv": {"_input_quantizer._amax": a}}``.

        Entries of modules without a Keras counterpart (SE multiply, residual
        add quantizers) are grouped under their PyTorch module path instead.
        """
        modules = {ngc: layer.name for layer, ngc in _mapped_layers(model)}
        grouped: Dict[str, Dict[str, np.ndarray]] = {}
        for key, value in self.quantizers.items():
            parts = key.split(".")
            cut = next(i for i, p in enumerate(parts) if p.endswith("_quantizer"))
            owner = ".".join(parts[:cut])
            grouped.setdefault(modules.get(owner, owner), {})[".".join(parts[cut:])] = value
        return grouped


def ngc_module_name(layer_name: str) -> Optional[str]:
    """PyTorch module path of the Keras layer ``layer_name`` (``None`` if it has none).

    Example: ``"block2b_dw_conv"`` -> ``"layers.1.block1.depsep.conv"``.
    """
    if layer_name in _FIXED:
        return _FIXED[layer_name]
    match = _BLOCK.match(layer_name)
    if not match:
        return None
    stage, letter, part = int(match.group(1)) - 1, match.group(2), match.group(3)
    return f"layers.{stage}.block{ord(letter) - ord('a')}.{_BLOCK_PARTS[part]}"


def _mapped_layers(model: keras.Model):
    """Yields ``(layer, ngc_module_name)`` for every layer that has a PyTorch counterpart."""
    for layer in model.layers:
        name = ngc_module_name(layer.name)
        if name is not None:
            yield layer, name


def _spec(variable, torch_axes: Optional[Tuple[int, ...]] = None) -> TensorSpec:
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
        specs = {"weight": _spec(layer.depthwise_kernel, (2, 3, 0, 1))}
    elif isinstance(layer, layers.Conv2D):
        specs = {"weight": _spec(layer.kernel, (3, 2, 0, 1))}
    elif isinstance(layer, layers.Dense):
        specs = {"weight": _spec(layer.kernel, (1, 0))}
    elif isinstance(layer, layers.BatchNormalization):
        specs = {"weight": _spec(layer.gamma), "bias": _spec(layer.beta),
                 "running_mean": _spec(layer.moving_mean), "running_var": _spec(layer.moving_variance)}
    else:
        raise NgcCheckpointError(f"no NGC conversion for layer {layer.name} of type {type(layer).__name__}")
    if getattr(layer, "use_bias", False) and not isinstance(layer, layers.BatchNormalization):
        specs["bias"] = _spec(layer.bias)
    return {f"{module}.{key}": spec for key, spec in specs.items()}


def expected_state_dict(model: keras.Model) -> Dict[str, TensorSpec]:
    """``{state_dict key: TensorSpec}`` for every weight of ``model``.

    Raises:
      NgcCheckpointError: a Keras weight has no PyTorch counterpart, or is
        targeted twice (the mapping must be one-to-one).
    """
    specs: Dict[str, TensorSpec] = {}
    for layer, module in _mapped_layers(model):
        specs.update(layer_specs(layer, module))
    covered = {id(spec.variable) for spec in specs.values()}
    if len(covered) != len(specs):
        raise NgcCheckpointError("NGC mapping assigns some Keras weight twice")
    missing = [w.name for w in model.weights if id(w) not in covered]
    if missing:
        raise NgcCheckpointError(f"Keras weights without an NGC counterpart: {_names(missing)}")
    return specs


def is_quantizer_key(key: str) -> bool:
    """True for quantizer entries (``...conv._input_quantizer._amax`` and the like)."""
    return bool(_QUANTIZER.search(key))


def strip_prefix(state: Mapping[str, np.ndarray], prefix: str = "module.") -> Dict[str, np.ndarray]:
    """Removes a DataParallel/DDP ``module.`` prefix from every key that has it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def unwrap_checkpoint(obj) -> Mapping:
    """The ``state_dict`` inside a training checkpoint dict (``state_dict``/``model`` key), else ``obj``."""
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            return unwrap_checkpoint(obj[wrapper])
    if not isinstance(obj, Mapping):
        raise NgcCheckpointError(f"expected a state_dict (a dict of tensors); found {type(obj).__name__}")
    return obj


def _to_numpy(value) -> np.ndarray:
    """torch tensor (or array-like) -> numpy; floating tensors become float32."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def _read_pth(path: str):
    """``torch.load(path, weights_only=True)`` on CPU, with a clear error without torch."""
    try:
        import torch
    except ImportError as err:
        raise NgcCheckpointError(
            f"reading {path} needs PyTorch, which is not installed: install torch (CPU) or convert to .npz. "
            "Install: pip install -e '.[torch]' --extra-index-url https://download.pytorch.org/whl/cpu; "
            "convert where torch is: numpy.savez(OUT.npz, **{k: v.float().numpy() for k, v in "
            "torch.load(IN.pth, map_location='cpu', weights_only=True).items()})") from err
    return torch.load(path, map_location="cpu", weights_only=True)


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
    """NGC ``state_dict`` of a ``.pth``/``.pt`` (needs torch) or ``.npz`` file.

    Checkpoint wrappers (``{"state_dict": ...}``, ``{"model": ...}``) are
    unwrapped and a ``module.`` prefix is stripped. Keys starting with ``__``
    (fixture extras such as ``__logits__``) are dropped.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such NGC checkpoint: {path}")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            raw = {k: archive[k] for k in archive.files}
    elif path.endswith((".pth", ".pt")):
        raw = _read_pth(path)
    else:
        raise NgcCheckpointError(f"unknown NGC checkpoint format {path!r}; expected one of {NGC_EXTENSIONS}")
    state = unwrap_checkpoint(raw)
    return strip_prefix({str(k): _to_numpy(v) for k, v in state.items() if not str(k).startswith("__")})


def _names(keys: List[str]) -> str:
    """First few ``keys``, and how many more."""
    shown = ", ".join(keys[:_MAX_NAMED])
    return shown + (f" (+{len(keys) - _MAX_NAMED} more)" if len(keys) > _MAX_NAMED else "")


def _fit(value: np.ndarray, spec: TensorSpec) -> Optional[np.ndarray]:
    """``value`` in the spec's PyTorch shape (a 1x1-conv SE weight squeezed to Linear), else None."""
    if value.shape == spec.torch_shape:
        return value
    if len(spec.torch_shape) == 2 and value.shape == spec.torch_shape + (1, 1):
        return value.reshape(spec.torch_shape)
    return None


def check_state_dict(state: Mapping[str, np.ndarray], specs: Mapping[str, TensorSpec]) -> None:
    """Raises :class:`NgcCheckpointError` naming missing, unexpected and mis-shaped keys."""
    weights = {k for k in state if not is_quantizer_key(k) and not k.endswith(IGNORED_SUFFIXES)}
    missing = [k for k in specs if k not in weights]
    unexpected = sorted(weights - set(specs))
    shapes = [f"{k}: expected {specs[k].torch_shape}, found {tuple(state[k].shape)}"
              for k in specs if k in state and _fit(np.asarray(state[k]), specs[k]) is None]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_names(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_names(shapes)}")
    if problems:
        raise NgcCheckpointError("NGC checkpoint does not fit the model: " + "; ".join(problems) +
                                 ". Check --model (b0/b4, widese) and --num-classes.")


def load_ngc_state_dict(model: keras.Model, state: Mapping[str, np.ndarray]) -> NgcImport:
    """Assigns an NGC ``state_dict`` (``{key: numpy array}``) to ``model``; all or nothing.

    Raises:
      NgcCheckpointError: keys or shapes do not match (nothing is assigned then).
    """
    state = strip_prefix(state)
    specs = expected_state_dict(model)
    check_state_dict(state, specs)
    if not any(layer.name == "stem_pad" for layer in model.layers):
        _log.warning("model %s uses padding='same': NGC weights were trained with symmetric padding, "
                     "outputs will differ from NVIDIA's (use --padding symmetric)", model.name)
    assigned = {}
    for key, spec in specs.items():
        value = spec.convert(_fit(np.asarray(state[key]), spec))
        spec.variable.assign(value.astype(spec.variable.dtype.as_numpy_dtype))
        assigned[key] = spec.variable.name
    quantizers = {k: np.asarray(v) for k, v in state.items() if is_quantizer_key(k)}
    return NgcImport(assigned=assigned, quantizers=quantizers)


def load_ngc_checkpoint(model: keras.Model, path: str) -> NgcImport:
    """Reads ``path`` (``.pth``/``.pt``/``.npz``) and assigns it to ``model``."""
    result = load_ngc_state_dict(model, read_state_dict(path))
    _log.info("imported %d NGC tensors from %s (%d quantizer entries set aside)",
              len(result.assigned), path, len(result.quantizers))
    return result


def load_pretrained_weights(model: keras.Model, path: str) -> None:
    """``--pretrained-from-file``: NGC PyTorch checkpoints by extension, else Keras/TF weights."""
    if path.endswith(NGC_EXTENSIONS):
        load_ngc_checkpoint(model, path)
    else:
        from common.checkpoint import load_weights_file

        load_weights_file(model, path)
