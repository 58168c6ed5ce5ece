"""Import torchvision ResNet / Mask R-CNN weights (same shape as :mod:`efficientnet_tf2.ngc`).

torchvision's ``resnet50-*.pth`` (ImageNet, v1.5: stride on the 3x3 conv) and the backbone of
``maskrcnn_resnet50_fpn_coco-*.pth`` (under ``backbone.body.``) name their modules::

    conv1, bn1                                  -> conv1_conv, conv1_bn
    layer<S>.<B>.conv<k>, layer<S>.<B>.bn<k>    -> conv<S+1>_block<B+1>_<k>_conv, _<k>_bn
    layer<S>.<B>.downsample.0, .downsample.1    -> conv<S+1>_block<B+1>_0_conv, _0_bn

and the rest of ``maskrcnn_resnet50_fpn``'s ``state_dict``::

    backbone.fpn.inner_blocks.<l-2>.0, layer_blocks.<l-2>.0   -> fpn lateral_p<l>, output_p<l>
    rpn.head.conv.0.0, cls_logits, bbox_pred                  -> rpn_head rpn_conv, rpn_class, rpn_box
    roi_heads.box_head.fc6, fc7                                -> box_head box_fc1, box_fc2
    roi_heads.box_predictor.cls_score, bbox_pred               -> box_head class_logits, box_deltas
    roi_heads.mask_head.<i>.0                                  -> mask_head mask_conv<i+1>
    roi_heads.mask_predictor.conv5_mask, mask_fcn_logits       -> mask_head mask_deconv, mask_logits

Besides the layout change of every tensor, three need their entries reordered: box deltas are
``(dx, dy, dw, dh)`` in torchvision and ``(dy, dx, dh, dw)`` here (``rpn_box`` output channels per
anchor, ``box_deltas`` rows per class), and ``fc6`` flattens RoI features ``(C, 7, 7)`` where
``box_fc1`` flattens ``(7, 7, C)``.

The key table is derived from the Keras layers (any depth and width). Tensors
are converted by layer type (:mod:`common.io.state_dict`); torchvision's convs have no bias, so
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

from common.io.state_dict import StateDictError, TensorSpec, key_problems, layer_specs, read_state_dict, tensor_spec

_log = logging.getLogger(__name__)

TORCHVISION_EXTENSIONS = (".pth", ".pt", ".npz")
DETECTOR_BACKBONE_PREFIX = "backbone.body."
IGNORED = re.compile(r"(^fc\.|num_batches_tracked$)")
_BLOCK = re.compile(r"^conv(\d)_block(\d+)_(\d)_(conv|bn)$")


DELTA_ORDER = (1, 0, 3, 2)  # our (dy, dx, dh, dw)[j] is torchvision's (dx, dy, dw, dh)[DELTA_ORDER[j]]


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


def _delta_rows(count: int) -> np.ndarray:
    """Indices into torchvision's ``4 * count`` delta outputs, in our ``(dy, dx, dh, dw)`` order per group."""
    return (np.arange(count)[:, None] * 4 + np.asarray(DELTA_ORDER)[None, :]).reshape(-1)


def _with_outputs_reordered(spec: TensorSpec, order: np.ndarray) -> TensorSpec:
    """``spec`` whose torch tensor's output axis (axis 0) is permuted by ``order`` before conversion."""
    return TensorSpec(spec.variable, spec.torch_shape, lambda a, f=spec.convert: f(np.asarray(a)[order]))


def _fc6_spec(layer, roi_size: int) -> TensorSpec:
    """``fc6.weight [D, C*R*R]`` (torch flattens ``(C, R, R)``) -> ``box_fc1`` kernel ``[R*R*C, D]``."""
    out_dim, in_dim = int(layer.kernel.shape[1]), int(layer.kernel.shape[0])
    channels = in_dim // (roi_size * roi_size)

    def convert(weight):
        weight = np.asarray(weight).reshape(out_dim, channels, roi_size, roi_size)
        return weight.transpose(2, 3, 1, 0).reshape(in_dim, out_dim)

    return TensorSpec(layer.kernel, (out_dim, in_dim), convert)


def _layer(model, path: str):
    """``"fpn/lateral_p2"`` -> that sub-layer of ``model`` (attribute, then dict / list lookups)."""
    head, name = path.split("/")
    owner = getattr(model, head)
    for layer in owner._flatten_layers(include_self=False, recursive=False):
        if layer.name == name:
            return layer
    raise TorchvisionCheckpointError(f"model has no layer {path}")


def detector_specs(model, num_classes_match: bool = True) -> Dict[str, TensorSpec]:
    """``{state_dict key: TensorSpec}`` of a whole ``MaskRCNN`` in ``maskrcnn_resnet50_fpn``'s layout.

    Args:
      model: a built :class:`mrcnn_tf2.modeling.mask_rcnn.MaskRCNN` with a ResNet backbone.
      num_classes_match: include the class-specific predictors (box classifier and regressor, mask
        logits); False for fine-tuning with another class count.
    """
    specs = backbone_specs(model.backbone, DETECTOR_BACKBONE_PREFIX)
    levels = sorted(int(name[len("lateral_p"):]) for name in (l.name for l in model.fpn._flatten_layers(
        include_self=False, recursive=False)) if name.startswith("lateral_p"))
    modules = {}
    for i, level in enumerate(levels):
        modules[f"fpn/lateral_p{level}"] = f"backbone.fpn.inner_blocks.{i}.0"
        modules[f"fpn/output_p{level}"] = f"backbone.fpn.layer_blocks.{i}.0"
    modules.update({"rpn_head/rpn_conv": "rpn.head.conv.0.0", "rpn_head/rpn_class": "rpn.head.cls_logits",
                    "box_head/box_fc2": "roi_heads.box_head.fc7",
                    "mask_head/mask_deconv": "roi_heads.mask_predictor.conv5_mask"})
    modules.update({f"mask_head/mask_conv{i + 1}": f"roi_heads.mask_head.{i}.0"
                    for i in range(model.config.mask_head.num_convs)})
    for path, module in modules.items():
        specs.update(layer_specs(_layer(model, path), module))
    rpn_box = _layer(model, "rpn_head/rpn_box")
    for key, spec in layer_specs(rpn_box, "rpn.head.bbox_pred").items():
        specs[key] = _with_outputs_reordered(spec, _delta_rows(rpn_box.filters // 4))
    fc6 = _layer(model, "box_head/box_fc1")
    specs["roi_heads.box_head.fc6.weight"] = _fc6_spec(fc6, model.config.roi_align.box_output_size)
    specs["roi_heads.box_head.fc6.bias"] = tensor_spec(fc6.bias)
    if num_classes_match:
        specs.update(layer_specs(_layer(model, "box_head/class_logits"), "roi_heads.box_predictor.cls_score"))
        specs.update(layer_specs(_layer(model, "mask_head/mask_logits"), "roi_heads.mask_predictor.mask_fcn_logits"))
        box = _layer(model, "box_head/box_deltas")
        for key, spec in layer_specs(box, "roi_heads.box_predictor.bbox_pred").items():
            specs[key] = _with_outputs_reordered(spec, _delta_rows(box.units // 4))
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


PREDICTOR_PREFIXES = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")


def _class_count(state: Mapping[str, np.ndarray]) -> Optional[int]:
    weight = state.get("roi_heads.box_predictor.cls_score.weight")
    return None if weight is None else int(np.asarray(weight).shape[0])


def load_detector_state_dict(model, state: Mapping[str, np.ndarray], what: str = "state_dict") -> int:
    """Assigns a ``maskrcnn_resnet50_fpn`` ``state_dict`` to ``model``; all or nothing.

    With another class count than the checkpoint's (fine-tuning on a custom data set), the
    class-specific predictors (box classifier and regressor, mask logits) keep their fresh
    initialisation and one log line names them; everything else must match.

    Returns:
      The number of tensors assigned.
    """
    classes = _class_count(state)
    matching = classes is None or classes == model.config.num_classes
    if not matching:
        state = {k: v for k, v in state.items() if not k.startswith(PREDICTOR_PREFIXES)}
    specs = detector_specs(model, num_classes_match=matching)
    _check(state, specs, what)
    _warn_layout(model.backbone)
    for key, spec in specs.items():
        spec.variable.assign(spec.convert(np.asarray(state[key])).astype(spec.variable.dtype.as_numpy_dtype))
    for layer in model.backbone.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            layer.bias.assign(np.zeros(layer.bias.shape, layer.bias.dtype.as_numpy_dtype))
    if not matching:
        _log.warning("%s has %d classes, the model %d: box_head/class_logits, box_head/box_deltas and "
                     "mask_head/mask_logits keep their initialisation (fine-tuning); every other layer is "
                     "imported", what, classes, model.config.num_classes)
    return len(specs)


def load_detector_checkpoint(model, path: str) -> int:
    """Reads ``path`` (``.pth``/``.pt`` with torch, or ``.npz``) and assigns it to ``model``."""
    try:
        state = read_state_dict(path)
    except StateDictError as err:
        raise TorchvisionCheckpointError(str(err)) from err
    count = load_detector_state_dict(model, state, what=path)
    _log.info("imported %d torchvision tensors from %s", count, path)
    return count


def load_backbone_checkpoint(backbone: keras.Model, path: str) -> int:
    """Reads ``path`` (``.pth``/``.pt`` with torch, or ``.npz``) and assigns it to ``backbone``."""
    try:
        state = read_state_dict(path)
    except StateDictError as err:
        raise TorchvisionCheckpointError(str(err)) from err
    count = load_backbone_state_dict(backbone, state, what=path)
    _log.info("imported %d torchvision tensors from %s into %s", count, path, backbone.name)
    return count
