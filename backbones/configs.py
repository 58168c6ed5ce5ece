"""Backbone configs: typed, TensorFlow-free, one frozen dataclass per architecture.

A backbone config is a *tagged union* (:data:`BackboneConfig`): each member has a ``kind``
(``"resnet"``, ``"efficientnet"``) that names it in ``config.json``, and holds only the fields
of its architecture. :func:`backbone_from_dict` reads one back. Builders live next to this
module (:mod:`backbones.resnet`, :mod:`backbones.efficientnet`, :func:`backbones.build.build_backbone`).

EfficientNet: a variant is a tuple of *block strings* (one per stage, timm style) plus a
row of the compound-scaling table (:data:`EFFICIENTNET_SCALING`, B0-B7). ``decode_block_string`` turns a string
such as ``"ir_r2_k3_s2_e6_c24_se0.25"`` into a :class:`BlockArgs`:

* ``ds``/``ir``: depthwise-separable (no expansion) / inverted residual;
* ``r``: repeats, ``k``: kernel size, ``s``: stride, ``e``: expansion ratio,
  ``c``: output channels, ``se``: squeeze-excitation ratio.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Dict, Mapping, Tuple, Union

from common.command.config import check as _check
from common.command.config import from_dict, tagged

# Stage definitions of EfficientNet-B0 (Tan & Le, 2019, Table 1).
B0_BLOCKS: Tuple[str, ...] = (
    "ds_r1_k3_s1_e1_c16_se0.25",
    "ir_r2_k3_s2_e6_c24_se0.25",
    "ir_r2_k5_s2_e6_c40_se0.25",
    "ir_r3_k3_s2_e6_c80_se0.25",
    "ir_r3_k5_s1_e6_c112_se0.25",
    "ir_r4_k5_s2_e6_c192_se0.25",
    "ir_r1_k3_s1_e6_c320_se0.25",
)

_TOKEN = re.compile(r"^([a-z]+)([0-9.]+)$")


@dataclasses.dataclass(frozen=True)
class BlockArgs:
    """One stage of MBConv blocks before compound scaling."""

    block_type: str
    num_repeat: int
    kernel_size: int
    strides: int
    expand_ratio: int
    output_filters: int
    se_ratio: float


def decode_block_string(block_string: str) -> BlockArgs:
    """Parses ``"ir_r2_k3_s2_e6_c24_se0.25"`` into :class:`BlockArgs`."""
    block_type, *tokens = block_string.split("_")
    if block_type not in ("ds", "ir"):
        raise ValueError(f"Unknown block type in {block_string!r}. Received: {block_type!r}")
    values = {}
    for token in tokens:
        match = _TOKEN.match(token)
        if not match:
            raise ValueError(f"Malformed token {token!r} in block string {block_string!r}")
        values[match.group(1)] = match.group(2)
    return BlockArgs(
        block_type=block_type,
        num_repeat=int(values["r"]),
        kernel_size=int(values["k"]),
        strides=int(values["s"]),
        expand_ratio=int(values["e"]),
        output_filters=int(values["c"]),
        se_ratio=float(values.get("se", 0.0)),
    )


@tagged
@dataclasses.dataclass(frozen=True)
class EfficientNetConfig:
    """One EfficientNet backbone (stem, MBConv stages, 1x1 head conv).

    Attributes:
      kind: union tag (always ``"efficientnet"``).
      width_coefficient: channel multiplier (compound scaling).
      depth_coefficient: repeat multiplier (compound scaling).
      resolution: default square input size in pixels.
      drop_connect_rate: final stochastic-depth rate (linear in block index).
      wide_se: SE width proportional to the expanded width (NVIDIA WideSE)
        instead of the block input width.
      padding: ``"same"`` (TF) or ``"symmetric"`` (k//2 on every side, as
        NVIDIA's PyTorch model, needed to import NGC weights exactly).
    """

    kind: str = "efficientnet"
    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0
    resolution: int = 224
    drop_connect_rate: float = 0.2
    wide_se: bool = False
    blocks: Tuple[str, ...] = B0_BLOCKS
    stem_filters: int = 32
    head_filters: int = 1280
    depth_divisor: int = 8
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    activation: str = "swish"
    padding: str = "same"

    def __post_init__(self):
        _check(self.kind == "efficientnet", f"kind must be 'efficientnet'. Received: kind={self.kind!r}")
        _check(self.padding in ("same", "symmetric"),
               f"padding must be 'same' or 'symmetric'. Received: padding={self.padding!r}")
        _check(self.width_coefficient > 0 and self.depth_coefficient > 0, "width/depth coefficients must be > 0. "
               f"Received: width_coefficient={self.width_coefficient}, depth_coefficient={self.depth_coefficient}")

    def replace(self, **overrides) -> "EfficientNetConfig":
        """Returns a copy with ``overrides`` applied (``None`` values ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def round_filters(self, filters: int) -> int:
        """Scales a channel count by the width coefficient, rounded to the divisor."""
        divisor = self.depth_divisor
        filters *= self.width_coefficient
        new_filters = max(divisor, int(filters + divisor / 2) // divisor * divisor)
        if new_filters < 0.9 * filters:
            new_filters += divisor
        return int(new_filters)

    def round_repeats(self, repeats: int) -> int:
        """Scales a stage's repeat count by the depth coefficient (ceil)."""
        return int(math.ceil(self.depth_coefficient * repeats))

    def stages(self) -> Tuple[BlockArgs, ...]:
        """Decoded block args of every stage (before scaling)."""
        return tuple(decode_block_string(s) for s in self.blocks)



#: Compound scaling (Tan & Le, 2019; timm, keras.applications): scale -> (width, depth, resolution,
#: classifier dropout). Stochastic depth 0.2 for all (survival 0.8, NVIDIA).
EFFICIENTNET_SCALING: Dict[str, Tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}


def efficientnet(scale: str, wide_se: bool = False, **overrides) -> EfficientNetConfig:
    """The backbone of ``efficientnet-<scale>`` (``wide_se``: NVIDIA's WideSE variants)."""
    _check(scale in EFFICIENTNET_SCALING, f"Unknown EfficientNet scale {scale!r}; known: {sorted(EFFICIENTNET_SCALING)}")
    width, depth, resolution, _ = EFFICIENTNET_SCALING[scale]
    return EfficientNetConfig(width_coefficient=width, depth_coefficient=depth, resolution=resolution,
                              wide_se=wide_se).replace(**overrides)


def efficientnet_dropout(scale: str) -> float:
    """The classifier dropout of ``efficientnet-<scale>`` (its scaling-table row)."""
    return EFFICIENTNET_SCALING[scale][3]


RESNET_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
PADDINGS = ("same", "symmetric")


@tagged
@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """One bottleneck ResNet (:func:`backbones.resnet.build_resnet`), Keras-applications layer names.

    Attributes:
      kind: union tag (always ``"resnet"``).
      depth: 50, 101 or 152.
      width_multiplier: channel multiplier; < 1 only for CI convergence tests.
      finetune_bn: train BatchNorm (batch statistics and gamma/beta); NVIDIA's Mask R-CNN: False.
      freeze_at: 0 nothing, 1 the stem (conv1), 2 stem + res2 (NVIDIA's Mask R-CNN), k: up to stage k.
      stride_in_1x1: the v1 layout (stride on the first 1x1 conv of a stage, as Keras applications and
        Detectron's MSRA weights) instead of v1.5 (stride on the 3x3 conv: torchvision, NVIDIA's
        ResNet-50 v1.5 classifier, TF Model Garden).
      bn_epsilon: BatchNorm epsilon: 1.001e-5 (Keras applications), 1e-5 (torchvision).
      padding: of the strided 3x3 convs: ``same`` (TensorFlow) or ``symmetric`` (PyTorch's ``padding=1``,
        needed for torchvision weights).
    """

    kind: str = "resnet"
    depth: int = 50
    width_multiplier: float = 1.0
    finetune_bn: bool = False
    freeze_at: int = 2
    stride_in_1x1: bool = True
    bn_epsilon: float = 1.001e-5
    padding: str = "same"

    def __post_init__(self):
        _check(self.kind == "resnet", f"kind must be 'resnet'. Received: kind={self.kind!r}")
        _check(self.depth in RESNET_DEPTHS, f"depth must be 50, 101 or 152. Received: depth={self.depth}")
        _check(self.width_multiplier > 0, f"width_multiplier must be > 0. Received: {self.width_multiplier}")
        _check(self.padding in PADDINGS, f"padding must be same or symmetric. Received: {self.padding!r}")
        _check(0 <= self.freeze_at <= 5, f"freeze_at must be in [0, 5]. Received: freeze_at={self.freeze_at}")

    def replace(self, **overrides) -> "ResNetConfig":
        """Returns a copy with ``overrides`` applied (``None`` values ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})



#: The tagged union of backbone configs; ``kind`` names the member.
BackboneConfig = Union[ResNetConfig, EfficientNetConfig]
BACKBONE_KINDS: Dict[str, type] = {"resnet": ResNetConfig, "efficientnet": EfficientNetConfig}


def backbone_from_dict(values: Mapping[str, Any]) -> BackboneConfig:
    """The backbone config of a ``config.json`` dict (its ``kind`` selects the member)."""
    kind = values.get("kind")
    _check(kind in BACKBONE_KINDS, f"backbone kind must be one of {sorted(BACKBONE_KINDS)}. Received: kind={kind!r}")
    return from_dict(BACKBONE_KINDS[kind], values)
