"""OpenVINO as a CPU runtime (``--runtime openvino`` of eval, infer and the benchmarks).

The same ONNX files onnxruntime runs (``export --format onnx``, or exported on the fly) are compiled for
OpenVINO's CPU plugin: the latency hint, one inference thread per usable core, FP32 arithmetic unless asked
otherwise (on CPUs with AVX512-BF16 or AMX the plugin's own default is bf16, which moves probabilities by ~1e-2),
and int8 kernels wherever the graph carries QuantizeLinear/DequantizeLinear pairs (OpenVINO's low-precision
transformations). A missing install is a one-line error naming the extra that provides it.
"""
from __future__ import annotations

import os
from typing import Optional

from common.command.config import OPENVINO_PRECISIONS as PRECISIONS
from common.io.onnx_runtime import cpu_count

INSTALL_HINT = "pip install -e '.[openvino]'"


def require_openvino():
    """The ``openvino`` module.

    Raises:
      SystemExit: it is not installed (one line naming the extra).
    """
    try:
        import openvino
    except ImportError:
        raise SystemExit(f"error: --runtime openvino needs the openvino extra (openvino is not installed): "
                         f"{INSTALL_HINT}") from None
    return openvino


def compile_model(path: str, threads: Optional[int] = None, precision: str = "f32", hint: str = "LATENCY"):
    """``path`` (an ``.onnx`` file) compiled for the CPU plugin.

    Args:
      path: the ONNX file.
      threads: inference threads (None: :func:`common.io.onnx_runtime.cpu_count`).
      precision: float arithmetic, one of :data:`PRECISIONS` (int8 comes from the graph's Q/DQ pairs).
      hint: OpenVINO's performance hint (``LATENCY`` | ``THROUGHPUT``).

    Raises:
      SystemExit: no such file, or OpenVINO cannot read or compile it (one line).
    """
    ov = require_openvino()
    if precision not in PRECISIONS:
        raise ValueError(f"Received: precision={precision!r}; expected one of {PRECISIONS}")
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path}: no such ONNX file")
    config = {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": int(threads or cpu_count()),
              "INFERENCE_PRECISION_HINT": precision}
    try:
        return ov.Core().compile_model(path, "CPU", config)
    except RuntimeError as err:  # OpenVINO prefixes the reason with "Exception from <source file>" lines
        reason = [line for line in str(err).splitlines() if line.strip() and not line.startswith("Exception from")]
        raise SystemExit(f"error: {path}: OpenVINO cannot compile it: {(reason or ['unknown reason'])[0].strip()}") \
            from None


def describe(compiled, path: str) -> str:
    """One log line: version, threads, precision, hint and the file."""
    import openvino as ov

    get = compiled.get_property
    precision = get("INFERENCE_PRECISION_HINT")
    precision = precision.get_type_name() if hasattr(precision, "get_type_name") else precision  # an ov.Type
    return (f"runtime OpenVINO {ov.get_version().split('-')[0]} (CPU, {get('INFERENCE_NUM_THREADS')} threads, "
            f"{precision} arithmetic, {get('PERFORMANCE_HINT')} hint): {os.path.abspath(path)}")
