"""Every custom_ops/*/*.cu* compiles with nvcc to an object (no GPU needed); skipped without nvcc.

The CUDA kernels are plain CUDA behind a C ABI (no TensorFlow header), so they build with any
toolkit; the TF include flags are passed anyway, as the loader does.
"""
import glob
import os
import shutil
import subprocess

import pytest

from custom_ops import loader

CUDA_SOURCES = sorted(p for p in glob.glob(os.path.join(loader.OPS_ROOT, "*", "*.cu*")) if loader.is_cuda_source(p))
pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")


def test_there_are_cuda_sources():
    assert any(p.endswith("roi_align_cuda.cu") for p in CUDA_SOURCES)


@pytest.mark.parametrize("source", CUDA_SOURCES, ids=lambda p: os.path.relpath(p, loader.OPS_ROOT))
def test_nvcc_compiles_to_object(source, tmp_path):
    target = str(tmp_path / "kernel.o")
    result = subprocess.run(loader.nvcc_command(source, target), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.getsize(target) > 0
