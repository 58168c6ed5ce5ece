"""Builds and loads the custom op libraries: one shared loader for every op folder.

``load("roi_align")`` compiles ``custom_ops/roi_align/*.cc`` (CUDA sources excluded)
with g++ into ``custom_ops/_build/roi_align.so`` unless a build with the same
fingerprint is already there, loads it with ``tf.load_op_library`` and caches the
module for the process. The fingerprint hashes the sources and headers of the folder,
the TensorFlow version and the compiler command, so editing a kernel or upgrading
TensorFlow rebuilds it. Builds are written to a temporary file and renamed, under a
file lock, so concurrent processes never load a half-written library.

CUDA sources (``*.cu``, ``*.cu.cc``) are compiled with nvcc and linked in (with
``-DGOOGLE_CUDA=1``) only when nvcc is on PATH, TensorFlow is built with CUDA and a GPU
is visible; otherwise the library is CPU-only.

``load`` returns ``None`` -- and logs one line, once -- when custom ops are switched off for
the machine (``MRCNN_NO_CUSTOM_OPS=1``, read-only) or the build or load fails. Callers then use
their plain-TF implementation; nothing raises. Whether a *model* uses them is its config's
``custom_ops`` value, passed to each op as ``fused=`` (no process-wide switch).
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from typing import Dict, List, Optional

_log = logging.getLogger(__name__)

ENV_DISABLE = "MRCNN_NO_CUSTOM_OPS"
OPS_ROOT = os.path.dirname(os.path.abspath(__file__))
BUILD_DIR = os.path.join(OPS_ROOT, "_build")
CXX_FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared")
NVCC_FLAGS = ("-O3", "-std=c++17", "-Xcompiler", "-fPIC", "--expt-relaxed-constexpr")
CUDA_SUFFIXES = (".cu", ".cu.cc")
HEADER_SUFFIXES = (".h", ".cuh")


def enabled() -> bool:
    """Whether this machine allows custom ops: ``MRCNN_NO_CUSTOM_OPS`` unset or 0."""
    return os.environ.get(ENV_DISABLE, "").strip().lower() in ("", "0", "false", "no")


def is_cuda_source(path: str) -> bool:
    """``True`` for ``*.cu`` and ``*.cu.cc`` files."""
    return path.endswith(CUDA_SUFFIXES)


class OpLibraryLoader:
    """Builds ``<root>/<name>/*.cc`` into ``<build_dir>/<name>.so`` and loads it once per process.

    Args:
      root: folder holding one sub-folder per op.
      build_dir: where libraries, their fingerprints and lock files go.
      cxx: the C++ compiler.
    """

    def __init__(self, root: str = OPS_ROOT, build_dir: str = BUILD_DIR, cxx: str = "g++"):
        self.root, self.build_dir, self.cxx = root, build_dir, cxx
        self._modules: Dict[str, object] = {}
        self._failed: Dict[str, str] = {}
        self._said_disabled = False

    def load(self, name: str):
        """The loaded op module of ``name``, or ``None`` (disabled, or build/load failed)."""
        if not enabled():
            if not self._said_disabled:
                _log.warning("custom ops disabled (%s=1 or --no_custom_ops): using plain-TF ops", ENV_DISABLE)
                self._said_disabled = True
            return None
        if name in self._modules:
            return self._modules[name]
        if name in self._failed:
            return None
        try:
            self._modules[name] = self._build_and_load(name)
        except Exception as error:  # noqa: BLE001 -- any failure means "use the fallback"
            self._failed[name] = _one_line(error)
            _log.warning("custom op '%s' unavailable, using the plain-TF fallback: %s", name, self._failed[name])
            return None
        return self._modules[name]

    def failure(self, name: str) -> Optional[str]:
        """Why ``load(name)`` returned ``None`` after a failed build/load, else ``None``."""
        return self._failed.get(name)

    def sources(self, name: str) -> List[str]:
        """Sorted C++ sources of op ``name`` (CUDA sources excluded)."""
        paths = glob.glob(os.path.join(self.root, name, "*.cc"))
        return sorted(p for p in paths if not is_cuda_source(p))

    def cuda_sources(self, name: str) -> List[str]:
        """Sorted CUDA sources of op ``name``."""
        folder = os.path.join(self.root, name)
        return sorted(p for p in glob.glob(os.path.join(folder, "*.cu*")) if is_cuda_source(p))

    def library_path(self, name: str) -> str:
        """``<build_dir>/<name>.so``."""
        return os.path.join(self.build_dir, f"{name}.so")

    def fingerprint(self, name: str, use_cuda: bool = False) -> str:
        """SHA-256 of the op's sources and headers, the TF version and the compile commands."""
        import tensorflow as tf

        digest = hashlib.sha256()
        files = sorted(glob.glob(os.path.join(self.root, name, "*")))
        for path in (p for p in files if p.endswith((".cc",) + CUDA_SUFFIXES + HEADER_SUFFIXES)):
            digest.update(os.path.basename(path).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read())
        digest.update(tf.__version__.encode())
        digest.update(" ".join(self._cxx_command(name, "OUT", use_cuda)).encode())
        return digest.hexdigest()

    def is_stale(self, name: str, use_cuda: bool = False) -> bool:
        """Whether ``<name>.so`` is missing or was built from other sources/flags."""
        stamp = self.library_path(name) + ".sha256"
        if not (os.path.exists(self.library_path(name)) and os.path.exists(stamp)):
            return True
        with open(stamp) as handle:
            return handle.read().strip() != self.fingerprint(name, use_cuda)

    def build(self, name: str) -> str:
        """Builds ``<name>.so`` if missing or stale (under a lock); returns its path."""
        if not self.sources(name):
            raise FileNotFoundError(f"no C++ sources in {os.path.join(self.root, name)}")
        os.makedirs(self.build_dir, exist_ok=True)
        use_cuda = bool(self.cuda_sources(name)) and cuda_build_possible()
        with open(os.path.join(self.build_dir, f"{name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_stale(name, use_cuda):
                self._compile(name, use_cuda)
        return self.library_path(name)

    def _build_and_load(self, name: str):
        import tensorflow as tf

        return tf.load_op_library(self.build(name))

    def _compile(self, name: str, use_cuda: bool) -> None:
        """Compiles into a temporary file in ``build_dir``, then renames it into place."""
        with tempfile.TemporaryDirectory(dir=self.build_dir) as scratch:
            target = os.path.join(scratch, f"{name}.so")
            _run(self._cxx_command(name, target, use_cuda, self._cuda_objects(name, scratch) if use_cuda else []))
            os.replace(target, self.library_path(name))
        with open(self.library_path(name) + ".sha256", "w") as handle:
            handle.write(self.fingerprint(name, use_cuda))

    def _cxx_command(self, name: str, target: str, use_cuda: bool, objects=()) -> List[str]:
        import tensorflow as tf

        cuda = ["-DGOOGLE_CUDA=1", f"-I{cuda_home()}/include"] if use_cuda else []
        link_cuda = [f"-L{cuda_home()}/lib64", "-lcudart"] if use_cuda else []
        return ([self.cxx, *CXX_FLAGS, *cuda, *tf.sysconfig.get_compile_flags(), *self.sources(name),
                 *objects, "-o", target, *tf.sysconfig.get_link_flags(), *link_cuda])

    def _cuda_objects(self, name: str, scratch: str) -> List[str]:
        objects = []
        for index, source in enumerate(self.cuda_sources(name)):
            objects.append(os.path.join(scratch, f"cuda_{index}.o"))
            _run(nvcc_command(source, objects[-1]))
        return objects


def nvcc_command(source: str, target: str, extra=()) -> List[str]:
    """``nvcc -c`` of one CUDA source into an object file (TF include flags added)."""
    import tensorflow as tf

    includes = [flag for flag in tf.sysconfig.get_compile_flags() if flag.startswith(("-I", "-D"))]
    return ["nvcc", "-c", "-x", "cu", *NVCC_FLAGS, "-DGOOGLE_CUDA=1", *includes, *extra, source, "-o", target]


def cuda_home() -> str:
    """``$CUDA_HOME``, else the folder above nvcc's ``bin``."""
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    real = os.path.realpath(nvcc)
    return os.environ.get("CUDA_HOME") or os.path.dirname(os.path.dirname(real))


def cuda_build_possible() -> bool:
    """nvcc on PATH, TensorFlow built with CUDA and a GPU visible to it."""
    import tensorflow as tf

    return (shutil.which("nvcc") is not None and tf.test.is_built_with_cuda()
            and bool(tf.config.list_physical_devices("GPU")))


def _run(command: List[str]) -> None:
    """Runs a compiler; raises ``RuntimeError`` carrying the first error line."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines()
        raise RuntimeError(f"{command[0]} failed ({lines[0] if lines else 'exit ' + str(result.returncode)})")


def _one_line(error: Exception) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())[:400]


_DEFAULT = OpLibraryLoader()


def load(name: str):
    """The op module of ``custom_ops/<name>`` (built on first use), or ``None`` -- see the module doc."""
    return _DEFAULT.load(name)


def failure(name: str) -> Optional[str]:
    """Why ``load(name)`` failed in this process, else ``None``."""
    return _DEFAULT.failure(name)


def default_loader() -> OpLibraryLoader:
    """The loader behind :func:`load` (``custom_ops/`` -> ``custom_ops/_build/``)."""
    return _DEFAULT
