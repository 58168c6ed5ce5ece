"""The ONNX export-graph switch: ONNX-friendly forms of the ops tf2onnx converts badly.

Inside ``with onnx_friendly():`` (on this thread, while an export graph is traced) the ops read
:func:`active` and build their export form; the Keras model and every other graph keep the default:

* ``ops.detections``: class-specific NMS as one NonMaxSuppression over (image, class) pairs
  (tf2onnx converts ``CombinedNonMaxSuppression`` only for boxes shared across classes);
* ``ops.roi_align``: bilinear sampling by four gathers (tf2onnx turns ``CropAndResize`` into a
  Loop that copies the whole feature map once per box: 7 of 10.7 s at 800 x 1216).

Both compute what the default forms compute (tests in ``tests/mrcnn_tf2/ops``).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

_state = threading.local()


@contextlib.contextmanager
def onnx_friendly() -> Iterator[None]:
    """Ops traced within this block (on this thread) take their ONNX-friendly form."""
    previous = active()
    _state.active = True
    try:
        yield
    finally:
        _state.active = previous


def active() -> bool:
    """Whether ops are being traced for an ONNX export graph."""
    return getattr(_state, "active", False)
