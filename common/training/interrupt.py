"""Preemption: SIGTERM and SIGINT stop a training run after the current step, which is then saved.

While :class:`StopRequest` is active (the trainer's ``fit``), the first SIGTERM or SIGINT only records
itself (one line on stderr); the training loop sees it after the step in flight, writes
``checkpoint-latest`` at that step and ends the command with status ``128 + signal``
(:class:`common.command.errors.Interrupted`). A second signal exits at once, as without the handler.
Handlers are installed only in the main thread (Python's rule) and restored on exit.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Dict, Optional

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Context manager recording the first stop signal; ``signum`` is None until one arrives."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous: Dict[int, object] = {}

    @property
    def name(self) -> str:
        """``SIGTERM`` / ``SIGINT`` of the recorded signal."""
        return signal.Signals(self.signum).name if self.signum else ""

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        del frame
        if self.signum is not None:  # the second one: exit now, as the default handler would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        print(f"{signal.Signals(signum).name} received: saving after the current step "
              f"(send it again to stop at once, without saving)", file=sys.stderr, flush=True)
