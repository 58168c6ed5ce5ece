"""Fused multilevel ROIAlign: ``MultilevelRoiAlign`` and its gradient (CPU + CUDA kernels).

Sources: ``roi_align_op.cc`` (registration), ``roi_align_kernel.cc`` (CPU kernels),
``roi_align_kernel_gpu.cc`` + ``roi_align_cuda.cu`` (CUDA kernels behind a C ABI),
``roi_align_geometry.h`` (the sampling arithmetic both share). Python API: :mod:`.ops`.
"""
from custom_ops.roi_align.ops import available, multilevel_roi_align

__all__ = ["available", "multilevel_roi_align"]
