"""Errors the user fixes, and how the entry point reports them.

A :class:`UserError` (bad path, value, config, checkpoint, data) ends a command with
exit status 2 and one line ``error: ...`` on stderr that names the flag or file and what
to do; the traceback is shown only with ``--verbose``. Anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations

import sys
import traceback
from typing import Optional

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem in what the user passed (paths, values, configs, checkpoints)."""


class DivergedError(UserError, FloatingPointError):
    """The loss became non-finite: training stopped before that epoch was saved (the checkpoints keep the
    last finite epoch)."""


class Interrupted(Exception):
    """A stop signal ended the run after saving it; ``status`` is the exit status (``128 + signal``)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class CheckpointError(UserError):
    """A checkpoint, its ``meta.json`` or a run's ``config.json`` that cannot be read or written (damaged, full
    disk, another optimizer); the message names the file and what to do."""


class DataError(UserError, ValueError):
    """Bad input data: a file or annotation that cannot be used (``--strict-data``, nothing usable left)."""


# Exceptions that only ever mean "a path the user gave is wrong" at the command level.
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)


def one_line(message: object) -> str:
    """``error: <message>`` on one line (a leading ``error:`` is not repeated)."""
    text = " ".join(str(message).split())
    return text if text.startswith("error:") else f"error: {text}"


def user_message(err: BaseException) -> Optional[str]:
    """The one-line report of a user error, None for anything else (a bug)."""
    if isinstance(err, SystemExit):
        return one_line(err.code) if isinstance(err.code, str) else None
    if isinstance(err, (UserError,) + _PATH_ERRORS):
        return one_line(err)
    return None


def report(err: BaseException, verbose: bool = False, stream=None) -> Optional[int]:
    """Prints a user error (traceback first with ``verbose``); returns its exit status, None if not one."""
    if isinstance(err, Interrupted):
        print(" ".join(str(err).split()), file=stream or sys.stderr, flush=True)
        return err.status
    message = user_message(err)
    if message is None:
        return None
    stream = stream or sys.stderr
    if verbose:
        traceback.print_exception(err, file=stream)
    print(message, file=stream, flush=True)
    return EXIT_USER_ERROR
