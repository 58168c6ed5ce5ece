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
import re
from typing import Dict, Mapping, Optional

import numpy as np
import tf_keras as keras

from common.io.state_dict import (STATE_DICT_EXTENSIONS, StateDictError, TensorSpec, key_problems, layer_specs,
                               names, strip_prefix)
from common.io.state_dict import read_state_dict as read_state_dict_file

_log = logging.getLogger(__name__)

NGC_EXTENSIONS = STATE_DICT_EXTENSIONS
IGNORED_SUFFIXES = ("num_batches_tracked",)
_QUANTIZER = re.compile(r"(^|\.)[^.]*_quantizer(\.|$)")
_BLOCK = re.compile(r"^block(\d+)([a-z])_(expand_conv|expand_bn|dw_conv|dw_bn|project_conv|project_bn"
                    r"|se_reduce|se_expand)$")
_BLOCK_PARTS = {"expand_conv": "expand.conv", "expand_bn": "expand.bn", "dw_conv": "depsep.conv",
                "dw_bn": "depsep.bn", "project_conv": "proj.conv", "project_bn": "proj.bn",
                "se_reduce": "se.squeeze", "se_expand": "se.expand"}
_FIXED = {"stem_conv": "stem.conv", "stem_bn": "stem.bn", "top_conv": "features.conv",
          "top_bn": "features.bn", "predictions": "classifier.fc"}


class NgcCheckpointError(StateDictError):
    """The checkpoint does not fit the model (missing/extra keys, wrong shapes) or cannot be read."""


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
        raise NgcCheckpointError(f"Keras weights without an NGC counterpart: {names(missing)}")
    return specs


def is_quantizer_key(key: str) -> bool:
    """True for quantizer entries (``...conv._input_quantizer._amax`` and the like)."""
    return bool(_QUANTIZER.search(key))


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

    def mismatch(key):
        if _fit(np.asarray(state[key]), specs[key]) is None:
            return f"{key}: expected {specs[key].torch_shape}, found {tuple(state[key].shape)}"
        return None

    problems = key_problems(weights, specs, mismatch)
    if problems:
        raise NgcCheckpointError("NGC checkpoint does not fit the model: " + "; ".join(problems) +
                                 ". Check --model (b0/b4, widese) and --num-classes.")


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
    """:func:`common.io.state_dict.read_state_dict` with NGC's error type."""
    try:
        return read_state_dict_file(path)
    except StateDictError as err:
        raise NgcCheckpointError(str(err)) from err


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
