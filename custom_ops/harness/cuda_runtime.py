"""Minimal CUDA runtime access through ctypes, for the standalone harnesses (no TensorFlow, no CuPy).

``CudaRuntime`` loads ``libcudart``, copies NumPy arrays to and from the device and
synchronises; ``build_shared_library`` compiles CUDA sources with nvcc into a ``.so``
that ctypes can load (each op exposes ``extern "C"`` launchers).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import shutil
import subprocess
from typing import List, Sequence

import numpy as np

HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2


def cuda_home() -> str:
    """``$CUDA_HOME``, else the folder above nvcc's ``bin``, else ``/usr/local/cuda``."""
    nvcc = shutil.which("nvcc")
    default = os.path.dirname(os.path.dirname(os.path.realpath(nvcc))) if nvcc else "/usr/local/cuda"
    return os.environ.get("CUDA_HOME", default)


def _find_cudart() -> str:
    candidates = sorted(glob.glob(os.path.join(cuda_home(), "lib64", "libcudart.so*")))
    return candidates[0] if candidates else (ctypes.util.find_library("cudart") or "libcudart.so")


class CudaRuntime:
    """``cudaMalloc``/``cudaMemcpy``/``cudaFree``/``cudaDeviceSynchronize`` on NumPy arrays."""

    def __init__(self, path: str = ""):
        self.lib = ctypes.CDLL(path or _find_cudart())
        self.lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        self.lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.lib.cudaFree.argtypes = [ctypes.c_void_p]
        self.lib.cudaGetErrorString.restype = ctypes.c_char_p
        self._allocations: List[int] = []

    def check(self, code: int, what: str) -> None:
        """Raises ``RuntimeError`` naming the CUDA error when ``code != 0``."""
        if code != 0:
            raise RuntimeError(f"{what}: CUDA error {code} ({self.lib.cudaGetErrorString(code).decode()})")

    def malloc(self, nbytes: int) -> int:
        """Device pointer to ``nbytes`` (at least 1) bytes, freed by :meth:`free_all`."""
        pointer = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(pointer), max(nbytes, 1)), "cudaMalloc")
        self._allocations.append(pointer.value)
        return pointer.value

    def to_device(self, array: np.ndarray) -> int:
        """Device copy of a C-contiguous ``array``."""
        array = np.ascontiguousarray(array)
        pointer = self.malloc(array.nbytes)
        if array.nbytes:
            self.check(self.lib.cudaMemcpy(pointer, array.ctypes.data, array.nbytes, HOST_TO_DEVICE), "cudaMemcpy")
        return pointer

    def empty(self, shape: Sequence[int], dtype=np.float32) -> int:
        """Uninitialised device buffer for ``shape``."""
        return self.malloc(int(np.prod(shape)) * np.dtype(dtype).itemsize)

    def to_host(self, pointer: int, shape: Sequence[int], dtype=np.float32) -> np.ndarray:
        """Host copy of a device buffer (synchronises first)."""
        self.synchronize()
        out = np.empty(shape, dtype)
        if out.nbytes:
            self.check(self.lib.cudaMemcpy(out.ctypes.data, pointer, out.nbytes, DEVICE_TO_HOST), "cudaMemcpy")
        return out

    def synchronize(self) -> None:
        self.check(self.lib.cudaDeviceSynchronize(), "cudaDeviceSynchronize")

    def free_all(self) -> None:
        for pointer in self._allocations:
            self.lib.cudaFree(pointer)
        self._allocations.clear()


def build_shared_library(sources: Sequence[str], target: str, arch: str = "native") -> str:
    """``nvcc -shared`` of ``sources`` into ``target`` (``-arch=native``: the visible GPU)."""
    command = ["nvcc", "-shared", "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "--expt-relaxed-constexpr",
               f"-arch={arch}", *sources, "-o", target]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"nvcc failed:\n{result.stderr[-4000:]}")
    return target
