"""EfficientNet backbone: turns an :class:`~backbones.configs.EfficientNetConfig` into layers.

Only standard tf-keras layers are used (Conv2D, DepthwiseConv2D,
BatchNormalization, Dense, Multiply, Dropout, Add), so models serialise with
``get_config``/``from_config``, save as SavedModel and can be annotated by
TF-MOT for quantization-aware training. Layer names are deterministic
(``block3b_expand_conv``) so checkpoints and weight maps stay stable.

Shapes: B batch, H/W spatial, C channels. Inputs are normalised float
images ``[B, H, W, 3]``; :func:`efficientnet_features` returns ``{level: [B, H/2**level, W/2**level, C]}``
(the classifier head is the task's: :func:`efficientnet_tf2.model.build_classifier`).
"""
from __future__ import annotations

import string
from typing import Dict

import tf_keras as keras

from backbones.configs import BlockArgs, EfficientNetConfig
from common.training.initializers import CONV_INIT

layers = keras.layers


def conv_bn(x, filters, kernel_size, strides, config, name, activation=True, depthwise=False):
    """Conv (or depthwise conv) + BatchNorm (+ activation) with the config's padding.

    Args:
      x: ``[B, H, W, Cin]`` tensor.
    Returns:
      ``[B, H/strides, W/strides, filters]`` tensor (``Cin`` for depthwise).
    """
    padding = "same"
    if config.padding == "symmetric" and strides > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    if depthwise:
        x = layers.DepthwiseConv2D(kernel_size, strides, padding=padding, use_bias=False,
                                   depthwise_initializer=CONV_INIT, name=f"{name}_conv")(x)
    else:
        x = layers.Conv2D(filters, kernel_size, strides, padding=padding, use_bias=False,
                          kernel_initializer=CONV_INIT, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=config.bn_momentum, epsilon=config.bn_epsilon,
                                  name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(config.activation, name=f"{name}_activation")(x)
    return x


def squeeze_excite(x, squeeze_filters, config, name):
    """Squeeze-and-excitation on ``[B, H, W, C]``: pool, two Dense, sigmoid gate."""
    filters = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}se_squeeze")(x)
    s = layers.Dense(squeeze_filters, activation=config.activation, kernel_initializer=CONV_INIT,
                     name=f"{name}se_reduce")(s)
    s = layers.Dense(filters, activation="sigmoid", kernel_initializer=CONV_INIT,
                     name=f"{name}se_expand")(s)
    return layers.Multiply(name=f"{name}se_excite")([x, s])


def mbconv_block(x, args: BlockArgs, input_filters, output_filters, strides, drop_rate, config, name):
    """One MBConv block: [expand 1x1] -> depthwise kxk -> SE -> project 1x1 (+ residual).

    Args:
      x: ``[B, H, W, input_filters]``.
    Returns:
      ``[B, H/strides, W/strides, output_filters]``.
    """
    inputs = x
    expanded = input_filters * args.expand_ratio
    if args.expand_ratio != 1:
        x = conv_bn(x, expanded, 1, 1, config, f"{name}expand")
    x = conv_bn(x, expanded, args.kernel_size, strides, config, f"{name}dw", depthwise=True)
    if args.se_ratio > 0:
        se_base = expanded if config.wide_se else input_filters
        x = squeeze_excite(x, max(1, int(se_base * args.se_ratio)), config, name)
    x = conv_bn(x, output_filters, 1, 1, config, f"{name}project", activation=False)
    if strides == 1 and input_filters == output_filters:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.Add(name=f"{name}add")([x, inputs])
    return x


def _block_plan(config: EfficientNetConfig):
    """Yields (name, args, in_filters, out_filters, strides, drop_rate, stage) per block."""
    stages = config.stages()
    total = sum(config.round_repeats(s.num_repeat) for s in stages)
    index = 0
    in_filters = config.round_filters(config.stem_filters)
    for stage_id, args in enumerate(stages):
        out_filters = config.round_filters(args.output_filters)
        for rep in range(config.round_repeats(args.num_repeat)):
            strides = args.strides if rep == 0 else 1
            drop = config.drop_connect_rate * index / total
            name = f"block{stage_id + 1}{string.ascii_lowercase[rep]}_"
            yield name, args, in_filters, out_filters, strides, drop, stage_id
            in_filters = out_filters
            index += 1


def efficientnet_features(inputs, config: EfficientNetConfig) -> Dict[int, "keras.KerasTensor"]:
    """Stem + MBConv stages + head conv; returns pyramid endpoints.

    Returns:
      ``{level: tensor}`` where level ``l`` has stride ``2**l``: levels 1-4
      are the last block of their resolution, level 5 is the 1x1 head conv
      output ``[B, H/32, W/32, head_filters]``.
    """
    x = conv_bn(inputs, config.round_filters(config.stem_filters), 3, 2, config, "stem")
    endpoints, level = {}, 1
    for name, args, fin, fout, strides, drop, _ in _block_plan(config):
        if strides > 1:
            endpoints[level] = x
            level += 1
        x = mbconv_block(x, args, fin, fout, strides, drop, config, name)
    x = conv_bn(x, config.round_filters(config.head_filters), 1, 1, config, "top")
    endpoints[level] = x
    return endpoints
