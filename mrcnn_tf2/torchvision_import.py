"""Import torchvision ResNet weights into the Mask R-CNN backbone (same shape as :mod:`efficientnet_tf2.ngc`).

torchvision's ``resnet50-*.pth`` (ImageNet, v1.5: stride on the 3x3 conv) and the backbone of
``maskrcnn_resnet50_fpn_coco-*.pth`` (under ``backbone.body.``) name their modules::

    conv1, bn1                                  -> conv1_conv, conv1_bn
    layer<S>.<B>.conv<k>, layer<S>.<B>.bn<k>    -> conv<S+1>_block<B+1>_<k>_conv, _<k>_bn
    layer<S>.<B>.downsample.0, .downsample.1    -> conv<S+1>_block<B+1>_0_conv, _0_bn

The key table is derived from the Keras backbone's own layers (any depth and width). Tensors
are converted by layer type (:mod:`common.state_dict`); torchvision's convs have no bias, so
the Keras conv biases are set to zero; ``fc.*`` (the ImageNet classifier) and
``num_batches_tracked`` are ignored. Exact outputs need the backbone in torchvision's layout:
``backbone.stride_in_1x1=False``, ``backbone.bn_epsilon=1e-5``, ``backbone.padding=symmetric``
(the ``torchvision`` preset); another layout loads with a warning.

``.pth`` files need torch (``pip install torch``); the same ``state_dict`` as ``.npz`` does not
(``scripts/convert_torchvision_checkpoint.py`` writes one).
"""
from __future__ import annotations

import logging
import re
from typing import Dict, Mapping, Optional

import numpy as np
import tf_keras as keras

from common.state_dict import StateDictError, TensorSpec, key_problems, layer_specs, read_state_dict, tensor_spec

_log = logging.getLogger(__name__)

TORCHVISION_EXTENSIONS = (".pth", ".pt", ".npz")
DETECTOR_BACKBONE_PREFIX = "backbone.body."
IGNORED = re.compile(r"(^fc\.|num_batches_tracked$)")
_BLOCK = re.compile(r"^conv(\d)_block(\d+)_(\d)_(conv|bn)$")


class TorchvisionCheckpointError(StateDictError):
    """A torchvision checkpoint does not fit the model (missing/extra keys, wrong shapes)."""


def backbone_module_name(layer_name: str) -> Optional[str]:
    """torchvision module path of a Keras ResNet layer (None if it has no weights there).

    Example: ``"conv3_block1_0_bn"`` -> ``"layer2.0.downsample.1"``.
    """
    if layer_name in ("conv1_conv", "conv1_bn"):
        return "conv1" if layer_name.endswith("conv") else "bn1"
    match = _BLOCK.match(layer_name)
    if not match:
        return None
    stage, block, part, kind = (int(match.group(1)) - 1, int(match.group(2)) - 1, int(match.group(3)),
                                match.group(4))
    prefix = f"layer{stage}.{block}"
    if part == 0:
        return f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
    return f"{prefix}.{kind}{part}"


def backbone_specs(backbone: keras.Model, prefix: str = "") -> Dict[str, TensorSpec]:
    """``{state_dict key: TensorSpec}`` of every backbone weight except the (bias-free in torch) conv biases.

    Raises:
      TorchvisionCheckpointError: a weighted layer has no torchvision counterpart.
    """
    specs: Dict[str, TensorSpec] = {}
    for layer in backbone.layers:
        if not layer.weights:
            continue
        module = backbone_module_name(layer.name)
        if module is None:
            raise TorchvisionCheckpointError(f"backbone layer {layer.name} has no torchvision counterpart")
        if isinstance(layer, keras.layers.Conv2D):
            specs[f"{prefix}{module}.weight"] = tensor_spec(layer.kernel, (3, 2, 0, 1))
        else:
            specs.update(layer_specs(layer, prefix + module))
    return specs


def _check(state: Mapping[str, np.ndarray], specs: Mapping[str, TensorSpec], what: str) -> None:
    def mismatch(key):
        if tuple(state[key].shape) != specs[key].torch_shape:
            return f"{key}: expected {specs[key].torch_shape}, found {tuple(state[key].shape)}"
        return None

    problems = key_problems([k for k in state if not IGNORED.search(k)], specs, mismatch)
    if problems:
        raise TorchvisionCheckpointError(f"{what} does not fit the backbone: " + "; ".join(problems) +
                                         ". Expected torchvision's resnet50 (or a detector's backbone.body.*) "
                                         "of the same depth and width.")


def _warn_layout(backbone: keras.Model) -> None:
    layer = backbone.get_layer("conv1_bn")
    padded = any(lyr.name.endswith("_2_pad") for lyr in backbone.layers)
    stride_in_3x3 = tuple(backbone.get_layer("conv3_block1_2_conv").strides) == (2, 2)
    if abs(layer.epsilon - 1e-5) > 1e-12 or not padded or not stride_in_3x3:
        _log.warning("backbone %s is not in torchvision's layout (bn_epsilon=1e-5, padding=symmetric, "
                     "stride_in_1x1=False): imported weights will not reproduce torchvision's outputs",
                     backbone.name)


def load_backbone_state_dict(backbone: keras.Model, state: Mapping[str, np.ndarray], what: str = "state_dict") -> int:
    """Assigns a torchvision ResNet ``state_dict`` (ImageNet or a detector's) to ``backbone``; all or nothing.

    Returns:
      The number of tensors assigned.

    Raises:
      TorchvisionCheckpointError: keys or shapes do not match (nothing assigned then).
    """
    prefix = DETECTOR_BACKBONE_PREFIX if any(k.startswith(DETECTOR_BACKBONE_PREFIX) for k in state) else ""
    if prefix:
        state = {k: v for k, v in state.items() if k.startswith(prefix)}
    specs = backbone_specs(backbone, prefix)
    _check(state, specs, what)
    _warn_layout(backbone)
    for key, spec in specs.items():
        spec.variable.assign(spec.convert(np.asarray(state[key])).astype(spec.variable.dtype.as_numpy_dtype))
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            layer.bias.assign(np.zeros(layer.bias.shape, layer.bias.dtype.as_numpy_dtype))
    return len(specs)


def load_backbone_checkpoint(backbone: keras.Model, path: str) -> int:
    """Reads ``path`` (``.pth``/``.pt`` with torch, or ``.npz``) and assigns it to ``backbone``."""
    try:
        state = read_state_dict(path)
    except StateDictError as err:
        raise TorchvisionCheckpointError(str(err)) from err
    count = load_backbone_state_dict(backbone, state, what=path)
    _log.info("imported %d torchvision tensors from %s into %s", count, path, backbone.name)
    return count
