"""onnxruntime as a CPU runtime (``--runtime onnxruntime`` of eval, infer and the benchmarks).

Sessions run on onnxruntime's CPU provider with one intra-op thread per core this process may
use and every graph optimisation on (measured in ``benchmarks/RESULTS.md``: ``all`` is the
fastest level, more threads than cores only lose). A missing install is a one-line error naming
the extra that provides it.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

#: ``--ort-optimization`` names -> onnxruntime's GraphOptimizationLevel attribute names.
OPTIMIZATION_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                       "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
INSTALL_HINT = "pip install -e '.[onnx]' (tf2onnx, onnx, onnxruntime)"

log = logging.getLogger(__name__)


def require_onnxruntime():
    """The ``onnxruntime`` module, tf2onnx and onnx importable.

    Raises:
      SystemExit: one of them is not installed (one line naming the extra).
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import tf2onnx  # noqa: F401
    except ImportError as err:
        raise SystemExit(f"error: --runtime onnxruntime needs the onnx extra ({err.name} is not installed): "
                         f"{INSTALL_HINT}") from None
    return onnxruntime


def cpu_count() -> int:
    """Cores this process may run on (affinity), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_session(path: str, threads: Optional[int] = None, optimization: str = "all"):
    """CPU ``InferenceSession`` of ``path``.

    Args:
      path: an ``.onnx`` file.
      threads: intra-op threads (None: :func:`cpu_count`).
      optimization: a key of :data:`OPTIMIZATION_LEVELS`.
    """
    ort = require_onnxruntime()
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"Received: optimization={optimization!r}; expected one of {tuple(OPTIMIZATION_LEVELS)}")
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path}: no such ONNX file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_count()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        raise SystemExit(f"error: {path}: onnxruntime cannot load it: {str(err).splitlines()[0]}") from None


def describe(session, path: str) -> str:
    """One log line: runtime version, threads, optimisation level and the file."""
    import onnxruntime as ort

    options = session.get_session_options()
    return (f"runtime onnxruntime {ort.__version__} (CPU, {options.intra_op_num_threads} intra-op threads, "
            f"graph optimisation {options.graph_optimization_level.name}): {os.path.abspath(path)}")
