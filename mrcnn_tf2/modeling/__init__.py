"""Mask R-CNN layers and models (variables live here; pure tensor functions are in ``ops``).

* ``fpn``       -- :class:`Fpn`, C2..C5 -> P2..P6 with 256 channels.
* ``heads``     -- :class:`RpnHead`, :class:`BoxHead`, :class:`MaskHead`.
* ``mask_rcnn`` -- :class:`MaskRCNN`, the wiring of all of the above.

The backbones (ResNet, EfficientNet) are shared with classification: :mod:`backbones`.
"""
from mrcnn_tf2.modeling.fpn import Fpn
from mrcnn_tf2.modeling.heads import BoxHead, MaskHead, RpnHead
from mrcnn_tf2.modeling.mask_rcnn import MaskRCNN, build_mask_rcnn

__all__ = ["BoxHead", "Fpn", "MaskHead", "MaskRCNN", "RpnHead", "build_mask_rcnn"]
