"""Fused RPN proposal generation: ``proposals.cc`` (CPU), ``proposals_cuda.cu`` (CUDA), ``ops.py``."""
