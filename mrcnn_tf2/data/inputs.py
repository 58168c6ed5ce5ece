"""Settings of the Mask R-CNN input pipeline (no TensorFlow here: configs import it freely)."""
from __future__ import annotations

import dataclasses
import math

from mrcnn_tf2.config import DEFAULT_IMAGE_SIZE


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """Input pipeline settings (NVIDIA Mask R-CNN defaults).

    Attributes:
      image_size: (short side target, long side max) of the aspect-keeping resize.
      padded_size: fixed (Hp, Wp) of batched images; None -> ``image_size`` rounded
        up to ``pad_multiple``.
      pad_multiple: 2**max_level of the FPN.
      max_instances: GT rows per image (extra instances are truncated).
      gt_mask_size: side of the box-aligned GT masks.
      mean, std: per-channel RGB normalisation in pixel scale (ImageNet).
      flip: random horizontal flip when training.
      skip_crowd: remove crowd instances from the GT.
      size_rounding: scaled size ``round(H * scale)`` (NVIDIA) or ``floor`` (torchvision's
        ``interpolate(scale_factor, recompute_scale_factor=True)``, in float64).
      box_scaling: network boxes -> original pixels by ``1 / scale`` (``scale``) or per axis by
        ``H / h`` and ``W / w`` (``per_axis``, torchvision's ``resize_boxes``).
      scale_jitter: training: ``(min, max)`` of the random resize factor, then a canvas-sized crop
        (:mod:`mrcnn_tf2.data.augment`; None: NVIDIA's fixed resize).
      scale_choices: training: the short side is ``image_size[0]`` times one of these (multi-scale).
      color_jitter: training: random brightness, contrast and saturation.
      per_image_canvas: eager inference pads each image to its own multiple of ``pad_multiple``
        (torchvision's ``batch_images``) instead of the fixed ``batch_padded_size()`` canvas; the
        canvas changes the features near the bottom/right border. Exported graphs keep the fixed canvas.
    """
    image_size: tuple = DEFAULT_IMAGE_SIZE
    padded_size: tuple | None = None
    pad_multiple: int = 64
    max_instances: int = 100
    gt_mask_size: int = 112
    mean: tuple = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    std: tuple = (0.229 * 255, 0.224 * 255, 0.225 * 255)
    flip: bool = True
    skip_crowd: bool = True
    size_rounding: str = "round"
    box_scaling: str = "scale"
    per_image_canvas: bool = False
    scale_jitter: tuple | None = None
    scale_choices: tuple = ()
    color_jitter: bool = False

    def __post_init__(self):
        """Validates sizes and counts ("Received: name=value; expected ...")."""
        sizes = [("image_size", self.image_size)]
        if self.padded_size is not None:
            sizes.append(("padded_size", self.padded_size))
        for name, value in sizes:
            if len(value) != 2 or min(value) <= 0:
                raise ValueError(f"Received: {name}={value}; expected two positive ints.")
        for name, value, allowed in (("size_rounding", self.size_rounding, ("round", "floor")),
                                     ("box_scaling", self.box_scaling, ("scale", "per_axis"))):
            if value not in allowed:
                raise ValueError(f"Received: {name}={value!r}; expected one of {allowed}.")
        if self.scale_jitter is not None and not (len(self.scale_jitter) == 2 and
                                                  0 < self.scale_jitter[0] <= self.scale_jitter[1]):
            raise ValueError(f"Received: scale_jitter={self.scale_jitter}; expected (min, max) with 0 < min <= max.")
        if any(f <= 0 for f in self.scale_choices):
            raise ValueError(f"Received: scale_choices={self.scale_choices}; expected positive factors.")
        for name in ("pad_multiple", "max_instances", "gt_mask_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Received: {name}={getattr(self, name)}; expected > 0.")

    @property
    def jitters_scale(self) -> bool:
        """Does training resize by a random factor (scale jitter or multi-scale)?"""
        return self.scale_jitter is not None or bool(self.scale_choices)

    def batch_padded_size(self) -> tuple[int, int]:
        """(Hp, Wp) of batched images: ``padded_size`` or ``image_size`` rounded up."""
        if self.padded_size is not None:
            return int(self.padded_size[0]), int(self.padded_size[1])
        m = self.pad_multiple
        return tuple(int(math.ceil(s / m) * m) for s in self.image_size)
