"""Fused TensorFlow ops for Mask R-CNN: one folder per op, one shared loader.

Layout (detectron2 ``layers/csrc`` style)::

    custom_ops/
      loader.py          builds custom_ops/<op>/*.cc into _build/<op>.so on first use, loads it
      build.py           ``python -m custom_ops.build``: prebuild every op and print its status
      <op>/              kernel sources (<op>.cc: registration + CPU kernel, <op>_cuda.cu: CUDA
                         kernels behind a C ABI launcher) and a Python wrapper (ops.py)
      harness/           standalone CUDA harnesses (no TensorFlow) comparing each CUDA kernel
                         with a CPU reference

Every wrapper returns ``None`` (and the caller uses its plain-TF path) when
:func:`custom_ops.loader.load` does: the library failed to build or load, or the ops
are switched off for the machine (``MRCNN_NO_CUSTOM_OPS=1``). A model passes its config's
``custom_ops`` to each op as ``fused=`` (False: plain TF, whatever is built).
"""
