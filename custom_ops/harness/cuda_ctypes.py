"""Minimal CUDA runtime access through ctypes for the standalone harnesses (no TensorFlow, no CuPy).

``build(source)`` compiles one ``custom_ops/<op>/*_cuda.cu`` into a shared library with
``nvcc -shared -cudart shared`` (so it and this module use the same ``libcudart``);
:class:`Cuda` allocates device buffers and copies NumPy arrays to and from them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import shutil
import subprocess
import tempfile

import numpy as np

ARCH_FLAGS = ("-arch=native",)  # the GPU of the machine the harness runs on


def cuda_home() -> str:
    """``$CUDA_HOME``, else the folder above nvcc's ``bin``."""
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    return os.environ.get("CUDA_HOME") or os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def build(source: str, out_dir: str = "", arch=ARCH_FLAGS) -> str:
    """``nvcc -shared`` of ``source`` into ``out_dir`` (a temporary folder by default); returns the .so path."""
    out_dir = out_dir or tempfile.mkdtemp(prefix="mrcnn_harness_")
    target = os.path.join(out_dir, os.path.basename(source).split(".")[0] + ".so")
    command = ["nvcc", "-shared", "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "--expt-relaxed-constexpr",
               "-cudart", "shared", *arch, source, "-o", target]
    subprocess.run(command, check=True)
    return target


def _load_cudart() -> ctypes.CDLL:
    candidates = sorted(glob.glob(os.path.join(cuda_home(), "lib64", "libcudart.so*")))
    found = ctypes.util.find_library("cudart")
    for path in candidates + ([found] if found else []):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    raise OSError("libcudart not found (set CUDA_HOME)")


class Cuda:
    """Device buffers for NumPy arrays; every call checks its ``cudaError_t``."""

    def __init__(self):
        self.rt = _load_cudart()
        self._buffers = []

    def check(self, code: int, what: str) -> None:
        """Raises ``RuntimeError`` for a non-zero ``cudaError_t``."""
        if code:
            self.rt.cudaGetErrorString.restype = ctypes.c_char_p
            raise RuntimeError(f"{what}: cudaError {code} ({self.rt.cudaGetErrorString(code).decode()})")

    def alloc(self, nbytes: int) -> ctypes.c_void_p:
        """Device allocation of ``nbytes`` (at least 1), freed by :meth:`free_all`."""
        pointer = ctypes.c_void_p()
        self.check(self.rt.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc")
        self._buffers.append(pointer)
        return pointer

    def to_device(self, array: np.ndarray) -> ctypes.c_void_p:
        """Copy of a C-contiguous array on the device."""
        array = np.ascontiguousarray(array)
        pointer = self.alloc(array.nbytes)
        self.check(self.rt.cudaMemcpy(pointer, array.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(array.nbytes),
                                      1), "cudaMemcpy H2D")
        return pointer

    def to_host(self, pointer: ctypes.c_void_p, shape, dtype) -> np.ndarray:
        """``np.empty(shape, dtype)`` filled from ``pointer``."""
        array = np.empty(shape, dtype)
        self.check(self.rt.cudaMemcpy(array.ctypes.data_as(ctypes.c_void_p), pointer, ctypes.c_size_t(array.nbytes),
                                      2), "cudaMemcpy D2H")
        return array

    def synchronize(self) -> None:
        """``cudaDeviceSynchronize``, checked."""
        self.check(self.rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize")

    def free_all(self) -> None:
        """Frees every buffer from :meth:`alloc`."""
        for pointer in self._buffers:
            self.rt.cudaFree(pointer)
        self._buffers = []
