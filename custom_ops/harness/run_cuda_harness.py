"""Runs every CUDA kernel harness (``custom_ops/harness/*_harness.py``) on a GPU, without TensorFlow.

    python -m custom_ops.harness.run_cuda_harness            # all harnesses
    python -m custom_ops.harness.run_cuda_harness roi_align  # roi_align_harness.py only

A harness ``<name>_harness.py`` either defines ``CUDA_SOURCES`` (paths relative to
``custom_ops/``) and ``run(lib, cuda) -> list of (case, max_abs_error, tolerance)``, where
``lib`` is the ctypes library built from its sources and ``cuda`` a :class:`CudaRuntime`,
or is self-contained with ``main(argv) -> exit status`` (called with no arguments). Each
case compares a CUDA kernel with the harness' NumPy CPU reference (itself tested against
the C++ CPU kernel in tests/custom_ops). Exit status 1 when any harness fails.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OPS_ROOT = os.path.dirname(HERE)
if os.path.dirname(OPS_ROOT) not in sys.path:
    sys.path.insert(0, os.path.dirname(OPS_ROOT))

from custom_ops.harness.cuda_runtime import CudaRuntime, build_shared_library  # noqa: E402


def discover():
    """``{name: module}`` of the ``<name>_harness`` modules in this folder."""
    return {info.name[:-len("_harness")]: importlib.import_module(f"custom_ops.harness.{info.name}")
            for info in pkgutil.iter_modules([HERE])
            if info.name.endswith("_harness") and info.name != "run_cuda_harness"}


def run_any(name: str, module, scratch: str, arch: str) -> bool:
    """Runs a ``run``-protocol harness here, or a self-contained one through its ``main``."""
    if hasattr(module, "run") and hasattr(module, "CUDA_SOURCES"):
        return run_harness(name, module, CudaRuntime(), scratch, arch)
    print(f"== {name}: {module.__name__}.main()", flush=True)
    return module.main([]) == 0


def run_harness(name: str, module, cuda: CudaRuntime, scratch: str, arch: str) -> bool:
    """Builds, runs and reports one harness; ``True`` when every case is within tolerance."""
    import ctypes

    sources = [os.path.join(OPS_ROOT, path) for path in module.CUDA_SOURCES]
    lib = ctypes.CDLL(build_shared_library(sources, os.path.join(scratch, f"{name}.so"), arch))
    ok = True
    try:
        for case, error, tolerance in module.run(lib, cuda):
            passed = error <= tolerance
            ok &= passed
            print(f"{name:<12} {case:<44} max|err| {error:.3e}  tol {tolerance:.0e}  "
                  f"{'ok' if passed else 'FAIL'}", flush=True)
    finally:
        cuda.free_all()
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="harness names, e.g. roi_align (default: all)")
    parser.add_argument("--arch", default="native", help="nvcc -arch (default: the visible GPU)")
    args = parser.parse_args(argv)
    harnesses = discover()
    with tempfile.TemporaryDirectory() as scratch:
        results = [run_any(name, harnesses[name], scratch, args.arch) for name in (args.names or sorted(harnesses))]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
