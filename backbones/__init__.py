"""Backbones shared by every task (keras-hub's Backbone, Model Garden's ``modeling/backbones``).

* ``configs``       -- TensorFlow-free typed configs: the tagged union :data:`~backbones.configs.BackboneConfig`
  of :class:`~backbones.configs.ResNetConfig` (50/101/152, v1 or v1.5) and
  :class:`~backbones.configs.EfficientNetConfig` (B0-B7, WideSE).
* ``resnet``        -- bottleneck ResNet with Keras-applications layer names, frozen BN / stages,
  ImageNet weight loading.
* ``efficientnet``  -- MBConv EfficientNet (block strings + compound scaling).
* ``build``         -- :func:`~backbones.build.build_backbone`: any config -> ``{level: tensor}``.

A backbone knows nothing of classification or detection: it maps ``[B, H, W, 3]`` images to
``{level: [B, H / 2**level, W / 2**level, C_level]}``; the tasks add their heads.
"""
