"""Mask R-CNN layers and models (variables live here; pure tensor functions are in ``ops``).

* ``resnet``    -- ResNet-50/101/152 backbone with Keras-applications layer names,
  frozen BN / stages, and :func:`load_backbone_weights` for ImageNet weights.
* ``fpn``       -- :class:`Fpn`, C2..C5 -> P2..P6 with 256 channels.
* ``heads``     -- :class:`RpnHead`, :class:`BoxHead`, :class:`MaskHead`.
* ``mask_rcnn`` -- :class:`MaskRCNN`, the wiring of all of the above.
"""
from mrcnn_tf2.modeling.fpn import Fpn
from mrcnn_tf2.modeling.heads import BoxHead, MaskHead, RpnHead
from mrcnn_tf2.modeling.mask_rcnn import MaskRCNN, build_mask_rcnn
from mrcnn_tf2.modeling.resnet import FrozenBatchNormalization, build_resnet, load_backbone_weights

__all__ = ["BoxHead", "Fpn", "FrozenBatchNormalization", "MaskHead", "MaskRCNN", "RpnHead",
           "build_mask_rcnn", "build_resnet", "load_backbone_weights"]
