"""LiteRT (TensorFlow Lite) as a CPU runtime (``--runtime tflite`` of eval, infer and the benchmarks).

``.tflite`` files (``export --format tflite``, or converted on the fly) run in LiteRT's interpreter with its
XNNPACK delegate (float and int8 kernels, one thread per usable core). The ``ai-edge-litert`` wheel is the
interpreter (TensorFlow's own ``tf.lite.Interpreter`` is deprecated); TensorFlow's converter writes the files.
A missing install is a one-line error naming the extra that provides it.
"""
from __future__ import annotations

import os
from typing import Optional

from common.io.onnx_runtime import cpu_count

INSTALL_HINT = "pip install -e '.[tflite]'"


def require_litert():
    """LiteRT's ``Interpreter`` class.

    Raises:
      SystemExit: ``ai-edge-litert`` is not installed (one line naming the extra).
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise SystemExit(f"error: --runtime tflite needs the tflite extra (ai-edge-litert is not installed): "
                         f"{INSTALL_HINT}") from None
    return Interpreter


def make_interpreter(path: str, threads: Optional[int] = None):
    """An interpreter of ``path`` with XNNPACK on ``threads`` threads (None: one per usable core).

    Raises:
      SystemExit: no such file, or LiteRT cannot read it (one line).
    """
    interpreter_class = require_litert()
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path}: no such TFLite file")
    try:
        return interpreter_class(model_path=path, num_threads=int(threads or cpu_count()))
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"error: {path}: LiteRT cannot load it: {str(err).strip().splitlines()[0]}") from None


def describe(path: str, threads: int) -> str:
    """One log line: version, threads and the file."""
    import ai_edge_litert

    version = getattr(ai_edge_litert, "__version__", "")
    return f"runtime LiteRT {version} (CPU, XNNPACK, {threads} threads): {os.path.abspath(path)}".replace("  ", " ")
