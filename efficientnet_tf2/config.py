"""EfficientNet architectures described as data.

A variant is a tuple of *block strings* (one per stage, timm style) plus a
row of the compound-scaling table. ``decode_block_string`` turns a string
such as ``"ir_r2_k3_s2_e6_c24_se0.25"`` into a :class:`BlockArgs`:

* ``ds``/``ir``: depthwise-separable (no expansion) / inverted residual;
* ``r``: repeats, ``k``: kernel size, ``s``: stride, ``e``: expansion ratio,
  ``c``: output channels, ``se``: squeeze-excitation ratio.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Tuple

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


@dataclasses.dataclass(frozen=True)
class EfficientNetConfig:
    """Hyper-parameters of one EfficientNet variant.

    Attributes:
      width_coefficient: channel multiplier (compound scaling).
      depth_coefficient: repeat multiplier (compound scaling).
      resolution: default square input size in pixels.
      dropout_rate: dropout before the classifier.
      drop_connect_rate: final stochastic-depth rate (linear in block index).
      wide_se: SE width proportional to the expanded width (NVIDIA WideSE)
        instead of the block input width.
      padding: ``"same"`` (TF) or ``"symmetric"`` (k//2 on every side, as
        NVIDIA's PyTorch model, needed to import NGC weights exactly).
    """

    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0
    resolution: int = 224
    dropout_rate: float = 0.2
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
    num_classes: int = 1000

    def __post_init__(self):
        if self.padding not in ("same", "symmetric"):
            raise ValueError(f"padding must be 'same' or 'symmetric'. Received: padding={self.padding!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1. Received: num_classes={self.num_classes}")

    def replace(self, **overrides) -> "EfficientNetConfig":
        """Returns a copy with ``overrides`` applied (``None`` values ignored)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **overrides)

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


# Compound-scaling table of the variants NVIDIA's recipe trains:
# (width, depth, resolution, dropout). Stochastic depth 0.2 for all (survival 0.8).
SCALING = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b4": (1.4, 1.8, 380, 0.4),
}


def variant_config(scale: str, wide_se: bool = False, **overrides) -> EfficientNetConfig:
    """Config of ``efficientnet-<scale>`` (``wide_se`` for the WideSE variants)."""
    if scale not in SCALING:
        raise ValueError(f"Unknown EfficientNet scale {scale!r}; known: {sorted(SCALING)}")
    width, depth, resolution, dropout = SCALING[scale]
    base = EfficientNetConfig(
        width_coefficient=width,
        depth_coefficient=depth,
        resolution=resolution,
        dropout_rate=dropout,
        wide_se=wide_se,
    )
    return base.replace(**overrides)
