"""Fused IoU + matching: ``box_matcher.cc`` (CPU), ``box_matcher_cuda.cu`` (CUDA), ``ops.py``."""
