"""One training run per workspace: a lock file held for the life of ``main.py train``.

``<workspace>/train.lock`` holds ``{"pid", "host", "since"}`` of the run that owns the workspace and an
exclusive ``flock`` on it. A second ``train`` into the same workspace is refused with one line naming the
holder; the operating system drops the lock when its process ends (also ``kill -9``), so a lock file left
by a dead run is taken over with a warning naming it. Nothing that cleans a workspace at start-up (the
unfinished saves of :mod:`common.training.checkpoint`) runs before the lock is held.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import socket
from typing import Optional

_log = logging.getLogger(__name__)

LOCK_FILE = "train.lock"


class WorkspaceBusy(Exception):
    """Another live process holds the workspace."""


class WorkspaceLock:
    """The exclusive lock of one workspace (a context manager; also released when the process ends)."""

    def __init__(self, workspace: str):
        self.path = os.path.join(workspace, LOCK_FILE)
        self._file = None

    def acquire(self) -> "WorkspaceLock":
        """Takes the lock (warning about a dead holder's lock file it replaces).

        Raises:
          WorkspaceBusy: a live process holds it (the message names it and what to do).
        """
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(handle))
            handle.close()
            raise WorkspaceBusy(f"{os.path.dirname(self.path)} is in use by another training run ({holder}); wait "
                                "for it to end, or train into another --workspace") from None
        previous = _read(handle)
        if previous:
            _log.warning("%s: took over the lock of a training run that is no longer running (%s)", self.path,
                         _describe(previous))
        handle.seek(0)
        handle.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "since": datetime.datetime.now().isoformat(timespec="seconds")}, handle)
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        """Empties the lock file and unlocks it (idempotent)."""
        if self._file is None:
            return
        self._file.seek(0)
        self._file.truncate()
        self._file.flush()
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> "WorkspaceLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(handle) -> Optional[dict]:
    """The holder recorded in the lock file (None: empty or unreadable)."""
    handle.seek(0)
    try:
        return json.loads(handle.read() or "null")
    except json.JSONDecodeError:
        return None


def _describe(holder: Optional[dict]) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
