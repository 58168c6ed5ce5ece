"""ResNet backbone (bottleneck v1 / v1.5) returning the pyramid ``{2: C2, 3: C3, 4: C4, 5: C5}``.

Shape glossary
  B      images in the batch
  H, W   input size (multiples of 32 keep every level exact)
  C_l    channels of level ``l``: ``4 * (64, 128, 256, 512)[l - 2] * width_multiplier``

Architecture and names follow ``keras.applications.ResNet50`` exactly (``conv1_conv``,
``conv2_block1_0_conv`` shortcut, ``conv2_block1_1_conv``, ..., ``conv5_block3_out``), so
the Keras ImageNet weights load by layer name (:func:`load_backbone_weights`) and a
full-width ResNet-50 has the Keras count of 23,587,712 parameters. Like Keras, convs
have biases (redundant before BatchNorm but part of the weights file), BN epsilon is
1.001e-5, the stem is ``ZeroPadding2D(3)`` + 7x7/2 conv + ``ZeroPadding2D(1)`` + 3x3/2
max-pool.

Layout of torchvision's ResNet (``bn_epsilon=1e-5``, ``padding="symmetric"``,
``stride_in_1x1=False``, the ``torchvision`` preset): the strided 3x3 convs pad one pixel
on every side (``ZeroPadding2D(1)`` + valid conv, as PyTorch's ``padding=1``) instead of
TensorFlow's ``same`` (which pads only bottom/right at stride 2); the conv biases stay and
are zero after an import (:mod:`mrcnn_tf2.torchvision_import`).

Stride placement: with ``stride_in_1x1=True`` (default) the first block of stages 3-5
strides on its first 1x1 conv, as in the original ResNet v1, Keras applications and
Detectron's MSRA weights: the layout the Keras checkpoint was trained with.
``stride_in_1x1=False`` strides on the 3x3 conv (v1.5, TF Model Garden / NVIDIA's TF2
ResNet-50); both have the same variables.

Freezing (NVIDIA / Detectron ``FREEZE_AT=2``): BatchNorm is a
:class:`FrozenBatchNormalization` (inference statistics, non-trainable gamma/beta, immune
to ``model.trainable = True``) unless ``finetune_bn``; the convs of the stem (conv1) and
of stages ``2..freeze_at`` are built with ``trainable=False`` (and their BN stays frozen
even with ``finetune_bn``). Weight decay is not applied here: the trainer adds L2.
"""
from __future__ import annotations

import os
from typing import Dict, List

import numpy as np
import tensorflow as tf
import tf_keras as keras

from backbones.configs import RESNET_DEPTHS, ResNetConfig
from common.training.initializers import CONV_INIT

layers = keras.layers

STAGE_BLOCKS = RESNET_DEPTHS
STAGE_FILTERS = (64, 128, 256, 512)  # bottleneck widths of stages 2..5; outputs are 4x
STEM_FILTERS = 64
BN_EPSILON = 1.001e-5  # keras.applications
BN_MOMENTUM = 0.9  # NVIDIA


@keras.utils.register_keras_serializable(package="backbones")
class FrozenBatchNormalization(layers.BatchNormalization):
    """BatchNormalization that always uses its moving statistics and never trains.

    ``trainable`` is always False, also after ``model.trainable = True``; ``call`` runs in
    inference mode whatever ``training`` says. Weights (gamma, beta, moving mean and
    variance) are those of a ``BatchNormalization``, so checkpoints are interchangeable.
    """

    def __init__(self, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)

    @property
    def trainable(self) -> bool:
        """Always False."""
        return False

    @trainable.setter
    def trainable(self, value) -> None:
        del value  # frozen by construction

    def call(self, inputs, training=None):
        """``[B, H, W, C]`` -> ``[B, H, W, C]`` normalised with the moving statistics."""
        del training
        return super().call(inputs, training=False)


def _scaled(filters: int, width_multiplier: float) -> int:
    """Channel count scaled by the width multiplier (at least 8)."""
    return max(8, int(round(filters * width_multiplier)))


def _batch_norm(name: str, frozen: bool, epsilon: float = BN_EPSILON):
    """Frozen or trainable BN layer named ``name``."""
    cls = FrozenBatchNormalization if frozen else layers.BatchNormalization
    return cls(axis=-1, momentum=BN_MOMENTUM, epsilon=epsilon, name=name)


def conv_bn(x, filters: int, kernel_size: int, strides: int, name: str, *, frozen: bool,
            finetune_bn: bool, relu: bool = True, padding: str = "same", bn_epsilon: float = BN_EPSILON):
    """Conv (with bias, Keras-applications style) + BN (+ ReLU).

    Args:
      x: ``[B, H, W, Cin]``.
      name: prefix; layers are ``{name}_conv``, ``{name}_bn``, ``{name}_relu``.
      frozen: conv and BN not trainable (frozen stage).
      finetune_bn: trainable BN in a non-frozen stage.
      padding: ``same`` | ``valid`` | ``symmetric`` (``kernel_size // 2`` zeros on every side, then valid).
      bn_epsilon: BatchNorm epsilon.

    Returns:
      ``[B, H / strides, W / strides, filters]``.
    """
    if padding == "symmetric":
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(filters, kernel_size, strides, padding=padding, kernel_initializer=CONV_INIT,
                      trainable=not frozen, name=f"{name}_conv")(x)
    x = _batch_norm(f"{name}_bn", frozen=frozen or not finetune_bn, epsilon=bn_epsilon)(x)
    if relu:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def bottleneck_block(x, filters: int, strides: int, name: str, *, conv_shortcut: bool,
                     stride_in_1x1: bool, padding: str = "same", **conv_kwargs):
    """Bottleneck 1x1 -> 3x3 -> 1x1 (x4) with a projection or identity shortcut.

    Args:
      x: ``[B, H, W, Cin]``.
      filters: bottleneck width; the output has ``4 * filters`` channels.
      strides: 1, or 2 in the first block of stages 3-5.
      name: e.g. ``conv3_block1``.
      conv_shortcut: 1x1 projection ``{name}_0`` (first block of a stage).
      stride_in_1x1: stride on the first 1x1 (v1) instead of the 3x3 (v1.5).
      padding: of a strided 3x3 conv: ``same`` (TensorFlow) or ``symmetric`` (PyTorch).
      **conv_kwargs: ``frozen``, ``finetune_bn`` and ``bn_epsilon`` for :func:`conv_bn`.

    Returns:
      ``[B, H / strides, W / strides, 4 * filters]``.
    """
    shortcut = x
    if conv_shortcut:
        shortcut = conv_bn(x, 4 * filters, 1, strides, f"{name}_0", relu=False, padding="valid", **conv_kwargs)
    stride_1x1, stride_3x3 = (strides, 1) if stride_in_1x1 else (1, strides)
    x = conv_bn(x, filters, 1, stride_1x1, f"{name}_1", padding="valid", **conv_kwargs)
    x = conv_bn(x, filters, 3, stride_3x3, f"{name}_2", padding=padding if stride_3x3 > 1 else "same",
                **conv_kwargs)
    x = conv_bn(x, 4 * filters, 1, 1, f"{name}_3", relu=False, padding="valid", **conv_kwargs)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def _stem(x, width_multiplier: float, frozen: bool, finetune_bn: bool, bn_epsilon: float):
    """conv1 7x7/2 + max-pool 3x3/2: ``[B, H, W, 3]`` -> ``[B, H/4, W/4, 64 * wm]``."""
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = conv_bn(x, _scaled(STEM_FILTERS, width_multiplier), 7, 2, "conv1", frozen=frozen,
                finetune_bn=finetune_bn, padding="valid", bn_epsilon=bn_epsilon)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def resnet_features(inputs, config: ResNetConfig) -> Dict[int, "keras.KerasTensor"]:
    """Stem + four bottleneck stages on ``inputs [B, H, W, 3]``: ``{2: C2, ..., 5: C5}`` (see the module doc)."""
    wm, finetune_bn = config.width_multiplier, config.finetune_bn
    x = _stem(inputs, wm, config.freeze_at >= 1, finetune_bn, config.bn_epsilon)
    features = {}
    for level, (blocks, filters) in enumerate(zip(STAGE_BLOCKS[config.depth], STAGE_FILTERS), start=2):
        kwargs = {"frozen": config.freeze_at >= level, "finetune_bn": finetune_bn,
                  "stride_in_1x1": config.stride_in_1x1, "padding": config.padding, "bn_epsilon": config.bn_epsilon}
        for block in range(blocks):
            strides = 2 if block == 0 and level > 2 else 1
            x = bottleneck_block(x, _scaled(filters, wm), strides, f"conv{level}_block{block + 1}",
                                 conv_shortcut=block == 0, **kwargs)
        features[level] = x
    return features


def build_resnet(depth: int = 50, width_multiplier: float = 1.0, finetune_bn: bool = False,
                 freeze_at: int = 2, stride_in_1x1: bool = True, input_shape=(None, None, 3),
                 name: str = "resnet", bn_epsilon: float = BN_EPSILON, padding: str = "same") -> keras.Model:
    """ResNet feature extractor (the arguments are :class:`~backbones.configs.ResNetConfig`'s fields).

    Args:
      input_shape: ``(H, W, 3)``; ``None`` sizes allowed.
      name: model name.

    Returns:
      A functional ``keras.Model``: images ``[B, H, W, 3]`` float ->
      ``{2: C2 [B, H/4, W/4, C_2], 3: C3 [B, H/8, ...], 4: C4 [B, H/16, ...], 5: C5 [B, H/32, ...]}``
      in the compute dtype of the layers.

    Raises:
      ValueError: an unknown depth or padding, ``width_multiplier <= 0``, ``freeze_at`` outside [0, 5].
    """
    config = ResNetConfig(depth=depth, width_multiplier=width_multiplier, finetune_bn=finetune_bn,
                          freeze_at=freeze_at, stride_in_1x1=stride_in_1x1, bn_epsilon=bn_epsilon, padding=padding)
    inputs = keras.Input(shape=input_shape, name="image")
    return keras.Model(inputs, resnet_features(inputs, config), name=name)


def _read_h5(path: str) -> Dict[str, List[np.ndarray]]:
    """``{layer_name: [arrays in weight order]}`` of a tf.keras / tf_keras HDF5 file.

    Reads ``save_weights("x.h5")`` and whole-model ``save("x.h5")`` files (the
    ``layer_names`` attribute, optionally under ``model_weights``). Keras 3
    ``.weights.h5`` files key layers by class and position, not by name, and are refused.
    """
    import h5py  # imported lazily: only needed to read weights files

    def text(value):
        return value.decode("utf8") if isinstance(value, bytes) else str(value)

    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise ValueError(f"{path!r} is not a tf.keras HDF5 weights file (no 'layer_names'; Keras 3 "
                             "files are keyed by layer class, not name). Save it with tf_keras: "
                             "keras.applications.ResNet50(include_top=False).save_weights('x.h5').")
        return {text(name): [np.asarray(root[text(name)][text(w)]) for w in root[text(name)].attrs["weight_names"]]
                for name in root.attrs["layer_names"]}


def _check_compatible(model: keras.Model, weights: Dict[str, List[np.ndarray]], path: str) -> None:
    """Raises ``ValueError`` naming ``path`` and the first layers that do not match."""
    missing, mismatched = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = weights.get(layer.name)
        model_shapes = [tuple(w.shape) for w in layer.weights]
        if arrays is None:
            missing.append(layer.name)
        elif [a.shape for a in arrays] != model_shapes:
            mismatched.append(f"{layer.name} (file {[a.shape for a in arrays]}, model {model_shapes})")
    if missing or mismatched:
        raise ValueError(f"Cannot load backbone weights from {path!r}: {len(missing)} layers missing from "
                         f"the file (first: {missing[:5]}), {len(mismatched)} with other shapes (first: "
                         f"{mismatched[:3]}). Expected keras.applications.ResNet{{50,101,152}}(include_top="
                         "False) weights of the same depth and width.")


def load_backbone_weights(backbone: keras.Model, path: str) -> None:
    """Loads ImageNet weights into a :func:`build_resnet` model.

    Args:
      backbone: the model returned by :func:`build_resnet`.
      path: a tf.keras / tf_keras HDF5 file (``.h5``, ``.hdf5``) of
        ``keras.applications.ResNet50(include_top=False)`` (with the top, the extra
        layers are ignored), matched by layer name; or a TensorFlow checkpoint (prefix or
        directory) written by ``save_weights`` of a model with the same architecture
        (e.g. this backbone, or the Keras application: same layer order).

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: the file lacks some backbone layers or has other shapes (the message
        names the file and the first offending layers).
    """
    if path.endswith((".pth", ".pt", ".npz")):
        raise ValueError(f"{path}: a PyTorch state_dict; read it with "
                         "mrcnn_tf2.torchvision_import.load_backbone_checkpoint")
    if path.endswith((".h5", ".hdf5")):
        if not os.path.exists(path):
            raise FileNotFoundError(f"Backbone weights file not found: {path!r}")
        weights = _read_h5(path)
        _check_compatible(backbone, weights, path)
        for layer in backbone.layers:
            if layer.weights:
                layer.set_weights(weights[layer.name])
        return
    prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    if not prefix or not tf.io.gfile.exists(prefix + ".index"):
        raise FileNotFoundError(f"No Keras .h5 file or TensorFlow checkpoint at {path!r}")
    try:
        backbone.load_weights(prefix).assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:
        raise ValueError(f"Cannot load backbone weights from checkpoint {prefix!r}: {error}") from error
