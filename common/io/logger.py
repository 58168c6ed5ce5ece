"""DLLogger-compatible metrics logging, readable stdout, TensorBoard, progress bars.

NVIDIA's ``dllogger`` writes one line per event to a JSON file::

    DLLL {"timestamp": "1700000000.123", "datetime": "2023-11-14 22:13:20.123000",
          "elapsedtime": 1.5, "type": "LOG", "step": [1, 20], "data": {"train.loss": 2.3}}

``step`` is ``"PARAMETER"`` for run parameters, a list such as ``[epoch]`` or
``[epoch, iteration]``, or ``[]`` for final results; ``METADATA`` lines
describe a metric (unit, format). :class:`Logger` writes exactly those lines
(the NVIDIA parsers read them), prints a readable version to stdout and
optionally mirrors scalars to TensorBoard. Only the chief writes anything.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import time
from typing import Dict, Optional, Sequence, Union

Step = Union[str, Sequence[object]]


def _jsonable(value):
    """Numbers, strings, lists and dicts as JSON-friendly Python values."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def dllogger_line(step: Step, data: Dict[str, object], start_time: float, kind: str = "LOG") -> str:
    """One ``DLLL {json}`` line in dllogger's JSONStreamBackend format."""
    now = time.time()
    record = {"timestamp": f"{now:.6f}",
              "datetime": datetime.datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S.%f"),
              "elapsedtime": round(now - start_time, 6), "type": kind}
    if kind == "METADATA":
        record.update(metric=step, metadata=_jsonable(data))
    else:
        record.update(step=step if isinstance(step, str) else _jsonable(list(step)), data=_jsonable(data))
    return "DLLL " + json.dumps(record)


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)


def format_stdout(step: Step, data: Dict[str, object]) -> str:
    """Readable form: ``epoch 1 iter 20 | train.loss 2.31 | train.lr 0.01``."""
    if isinstance(step, str):
        head = step
    elif len(step) == 0:
        head = "summary"
    else:
        names = ("epoch", "iter")
        head = " ".join(f"{names[i]} {s}" if i < 2 and isinstance(s, int) else str(s)
                        for i, s in enumerate(step))
    return head + " | " + " | ".join(f"{k} {_format_value(_jsonable(v))}" for k, v in data.items())


class Logger:
    """DLLogger JSON file + stdout + optional TensorBoard.

    Args:
      log_file: path of the ``DLLL`` JSON lines file (``None``: none).
      tensorboard_dir: directory for TensorBoard summaries (``None``: none; :mod:`common.io.tensorboard`).
      is_chief: only the chief writes; other workers' loggers are silent.
      stream: where readable lines go (default ``sys.stdout``).
    """

    def __init__(self, log_file: Optional[str] = None, tensorboard_dir: Optional[str] = None,
                 is_chief: bool = True, stream=None):
        self.enabled = is_chief
        self.start = time.time()
        self.stream = stream or sys.stdout
        self.log_file = log_file
        self._file = None
        self._writer = None
        self._tb_step = 0
        #: the training step for TensorBoard (set by the trainer; None: log calls are counted).
        self.global_step = None
        if not self.enabled:
            return
        if log_file:
            os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
            self._file = open(log_file, "a", buffering=1)
        if tensorboard_dir:
            from common.io.tensorboard import SummaryWriter

            self._writer = SummaryWriter(tensorboard_dir)

    def metadata(self, metric: str, meta: Dict[str, object]) -> None:
        """Declares a metric's unit/format (dllogger ``METADATA`` line)."""
        if self.enabled and self._file:
            self._file.write(dllogger_line(metric, meta, self.start, kind="METADATA") + "\n")

    def log(self, step: Step, data: Dict[str, object], echo: bool = True) -> None:
        """Writes one ``LOG`` event; numeric values also go to TensorBoard."""
        if not self.enabled or not data:
            return
        if self._file:
            self._file.write(dllogger_line(step, data, self.start) + "\n")
        if echo:
            print(format_stdout(step, data), file=self.stream, flush=True)
        self._tensorboard(step, data)

    def _step(self) -> int:
        """The TensorBoard step: the trainer's global step, else the number of log calls."""
        self._tb_step += 1
        return int(self.global_step()) if self.global_step is not None else self._tb_step

    def _tensorboard(self, step: Step, data: Dict[str, object]) -> None:
        if self._writer is None or isinstance(step, str) or (step == () and self.global_step is not None):
            return  # a training run's () lines repeat its epochs' values (summary) or are notes
        values = {k: _jsonable(v) for k, v in data.items()}
        self._writer.scalars(self._step(), {k: v for k, v in values.items()
                                            if isinstance(v, (int, float)) and not isinstance(v, bool)})

    def pictures(self, paths, root: str) -> None:
        """The PNGs among ``paths`` as TensorBoard image summaries (tags: their paths under ``root``)."""
        if self.enabled and self._writer is not None and paths:
            self._writer.pictures(self._step(), paths, root)

    def pr_curves(self, curves) -> None:
        """``{tag: (precision [R], recall [R])}`` as TensorBoard PR-curve summaries."""
        if self.enabled and self._writer is not None and curves:
            self._writer.pr_curves(self._step(), curves)

    def drop_after(self, epoch: int) -> int:
        """Removes the file's lines of epochs after ``epoch`` (a resume redoes them); returns how many.

        Lines whose step is ``[e, ...]`` with ``e > epoch`` go; PARAMETER, METADATA and other
        lines stay. The file is rewritten atomically and reopened for appending.
        """
        if not (self.enabled and self._file):
            return 0
        self._file.close()
        with open(self.log_file) as f:
            lines = f.readlines()
        kept = [line for line in lines if not _after_epoch(line, epoch)]
        tmp = self.log_file + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, self.log_file)
        self._file = open(self.log_file, "a", buffering=1)
        return len(lines) - len(kept)

    def flush(self) -> None:
        if self._file:
            self._file.flush()
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        self.flush()
        if self._file:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _after_epoch(line: str, epoch: int) -> bool:
    """Is ``line`` a ``DLLL`` record of an epoch after ``epoch`` (step ``[e, ...]``, ``e > epoch``)?"""
    if not line.startswith("DLLL "):
        return False
    try:
        step = json.loads(line[5:]).get("step")
    except ValueError:
        return False
    return isinstance(step, list) and bool(step) and isinstance(step[0], int) and step[0] > epoch


def setup_logger(log_file: Optional[str] = None, tensorboard_dir: Optional[str] = None,
                 is_chief: bool = True) -> Logger:
    """The logger every command uses (see :class:`Logger`)."""
    return Logger(log_file=log_file, tensorboard_dir=tensorboard_dir, is_chief=is_chief)


def read_dllogger(path: str):
    """Parses a ``DLLL`` file back into a list of dicts (for tests and reports)."""
    with open(path) as f:
        return [json.loads(line[5:]) for line in f if line.startswith("DLLL ")]


class ProgressBar:
    """A one-line progress bar for long loops (a line every ~10 % when not a TTY).

    Args:
      total: expected number of updates (``None``: unknown).
      desc: label in front of the bar.
      unit: what ``images`` counts, for the rate display.
      enabled: ``False`` makes every call a no-op (non-chief workers).
    """

    def __init__(self, total: Optional[int], desc: str = "", unit: str = "it", enabled: bool = True,
                 stream=None, width: int = 24):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.count = 0
        self.items = 0
        self.start = time.perf_counter()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_print = -1.0
        self._postfix = ""

    def update(self, n: int = 1, images: int = 0, **postfix) -> None:
        """Advances by ``n`` steps, ``images`` items; ``postfix`` values are shown (e.g. loss)."""
        if not self.enabled:
            return
        self.count += n
        self.items += images
        self._postfix = " ".join(f"{k}={_format_value(v)}" for k, v in postfix.items())
        if self._due():
            self._render()

    def _due(self) -> bool:
        now = time.perf_counter()
        if self._tty:
            ready = now - self._last_print > 0.1
        elif self.total:
            ready = self.count == 1 or self.count == self.total or \
                self.count % max(self.total // 10, 1) == 0
        else:
            ready = now - self._last_print > 30.0
        if ready:
            self._last_print = now
        return ready

    def _render(self) -> None:
        elapsed = time.perf_counter() - self.start
        rate = f"{self.items / max(elapsed, 1e-9):.1f} {self.unit}/s" if self.items else \
            f"{self.count / max(elapsed, 1e-9):.2f} it/s"
        if self.total:
            filled = int(self.width * min(self.count / self.total, 1.0))
            bar = "#" * filled + "." * (self.width - filled)
            eta = elapsed / self.count * (self.total - self.count)
            text = f"{self.desc} [{bar}] {self.count}/{self.total} {rate} eta {eta:.0f}s {self._postfix}"
        else:
            text = f"{self.desc} {self.count} steps {rate} {self._postfix}"
        end = "" if self._tty else "\n"
        prefix = "\r" if self._tty else ""
        self.stream.write(prefix + text.rstrip() + end)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.count and self._tty:
            self._render()
            self.stream.write("\n")
            self.stream.flush()


class NullLogger:
    """A logger that drops everything (benchmarks, tests): the :class:`Logger` interface."""

    enabled = False
    global_step = None

    def metadata(self, metric: str, meta: Dict[str, object]) -> None:
        pass

    def log(self, step: Step, data: Dict[str, object], echo: bool = True) -> None:
        pass

    def drop_after(self, epoch: int) -> int:
        return 0

    def pictures(self, paths, root: str) -> None:
        pass

    def pr_curves(self, curves) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
