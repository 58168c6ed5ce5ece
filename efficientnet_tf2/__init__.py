"""EfficientNet (and any-backbone) image classification for TensorFlow 2, after NVIDIA's recipe.

Python API (loaded on first use, so ``import efficientnet_tf2`` stays light): :func:`create_model`
(a ``tf_keras.Model`` by name, with published weights), :class:`Classifier` (``from_workspace``,
``from_pretrained``, ``classify``).
"""

_API = {"create_model": "efficientnet_tf2.api", "Classifier": "efficientnet_tf2.inference",
        "Classification": "efficientnet_tf2.inference"}


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'efficientnet_tf2' has no attribute {name!r}")
