"""Standalone CUDA harnesses (no TensorFlow): see README.md and run_cuda_harness.py."""
