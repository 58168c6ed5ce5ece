"""Mask R-CNN (ResNet-50 FPN) for TensorFlow 2, after NVIDIA's TF2 recipe."""
