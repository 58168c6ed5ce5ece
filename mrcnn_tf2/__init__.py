"""Mask R-CNN (ResNet-50 FPN, or any backbone) for TensorFlow 2, after NVIDIA's TF2 recipe.

Python API (loaded on first use): :class:`Detector` (``from_workspace``, ``from_pretrained``, ``detect``).
"""


def __getattr__(name):
    if name == "Detector":
        from mrcnn_tf2.inference import Detector

        return Detector
    raise AttributeError(f"module 'mrcnn_tf2' has no attribute {name!r}")
