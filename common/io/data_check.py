"""Input data checked once before a run: every bad file or annotation named, then skipped or refused.

Images get fast structural checks (no decoding): readable, not empty, a JPEG / PNG / GIF /
BMP / WebP signature, and the format's end marker present (JPEG end-of-image, PNG ``IEND``,
GIF trailer, BMP / WebP declared size), so a truncated download is caught, and a size within the pixel budget
(:mod:`common.io.pixel_budget`), so a decompression bomb is refused before it is decoded. Families add
their own checks (COCO annotations) to the same :class:`DataReport`.

:func:`settle` then reports the problems in one summary (count, the first few by name, the
file holding the full list) and, by default, lets the run continue without them; with
``--strict-data`` any problem is a :class:`common.command.errors.DataError` before the first step.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import struct
import sys
from typing import Callable, List, Optional, Sequence, Tuple

from common.command.errors import DataError

_log = logging.getLogger(__name__)
SHOWN = 5  # problems named in the summary line
TAIL_BYTES = 4096  # where the end marker of a JPEG/PNG/GIF is looked for
CHECK_THREADS = 16  # files checked at once (I/O bound)


# ------------------------------------------------------------------ images
def _image_format(head: bytes) -> Optional[str]:
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def _structure_problem(fmt: str, head: bytes, tail: bytes, size: int) -> Optional[str]:
    """What is wrong with a file of format ``fmt`` given its first 32 and last bytes (None: looks whole)."""
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if fmt == "PNG":
        if head[12:16] != b"IHDR":
            return "damaged PNG (no IHDR header chunk)"
        width, height = struct.unpack(">II", head[16:24])
        if width == 0 or height == 0:
            return f"PNG of size {width}x{height}"
        if b"IEND" not in tail:
            return "truncated PNG (no IEND chunk)"
    if fmt == "GIF" and not tail.rstrip(b"\x00").endswith(b";"):
        return "truncated GIF (no trailer)"
    if fmt == "BMP" and len(head) >= 6 and struct.unpack("<I", head[2:6])[0] > size:
        return "truncated BMP (shorter than its header says)"
    if fmt == "WebP" and struct.unpack("<I", head[4:8])[0] + 8 > size:
        return "truncated WebP (shorter than its header says)"
    return None


def name_problem(name) -> Optional[str]:
    """Why ``name`` (a file name from an annotation file) may not be opened inside its image folder (None: it
    may): not a string, absolute, or leaving the folder through ``..``. Checked on the name, before any I/O."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return f"file_name {str(name)[:80]!r} is not a file name"
    if os.path.isabs(name) or os.path.splitdrive(name)[0]:
        return f"file_name {name[:200]!r} is an absolute path; it must be relative to the image folder (refused)"
    if os.path.normpath(name).split(os.sep)[0] == os.pardir:
        return f"file_name {name[:200]!r} leaves the image folder through '..' (refused)"
    return None


def image_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be used as an image (None: it can): structure (at most 4 KB + 32 bytes read) and the
    pixel budget (:mod:`common.io.pixel_budget`: the header's declared size, a JPEG's marker segments)."""
    return inspect_image(path)[0]


def inspect_image(path: str) -> Tuple[Optional[str], Optional[Tuple[int, int]]]:
    """``(problem, (width, height))`` of ``path`` from one open: :func:`image_problem`'s verdict and the size
    its header declares (None where not found; a GIF/BMP/PNG/WebP/JPEG header normally has it)."""
    from common.io.pixel_budget import budget_problem, declared_size

    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file (0 bytes)", None
        with open(path, "rb") as f:
            head = f.read(32)
            f.seek(max(size - TAIL_BYTES, 0))
            tail = f.read()
            fmt = _image_format(head)
            if fmt is None:
                return "not a JPEG/PNG/GIF/BMP/WebP image", None  # not echoed: the file may be anything
            problem = _structure_problem(fmt, head, tail, size)
            dims = None if problem else declared_size(f)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})", None
    return problem or budget_problem(dims), dims


# ------------------------------------------------------------------ report
@dataclasses.dataclass
class DataReport:
    """Problems found in one data source.

    Attributes:
      source: what was checked (a folder or an annotation file), for messages.
      checked: how many items were checked.
      problems: ``(where, why)`` pairs: ``where`` a file path, or ``"<file> annotation <id>"``.
    """

    source: str
    checked: int = 0
    problems: List[Tuple[str, str]] = dataclasses.field(default_factory=list)

    def add(self, where: str, why: str) -> None:
        self.problems.append((where, why))

    def __len__(self) -> int:
        return len(self.problems)

    def summary(self, what: str = "items", shown: int = SHOWN) -> str:
        """One line: how many, the first ``shown`` by name and reason."""
        first = "; ".join(f"{where}: {why}" for where, why in self.problems[:shown])
        more = f"; and {len(self) - shown} more" if len(self) > shown else ""
        return f"{len(self)} of {self.checked} {what} in {self.source} are unusable: {first}{more}"

    def write(self, path: str) -> str:
        """Writes every problem, one ``where<TAB>why`` line each; returns ``path``."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.writelines(f"{where}\t{why}\n" for where, why in self.problems)
        return path


def check_images(paths: Sequence[str], report: DataReport, cache_dir: Optional[str] = None) -> List[str]:
    """The usable ``paths`` (order kept) of a folder listing made just now; each unusable one is added to
    ``report``.

    ``cache_dir`` (the workspace): verdicts are kept in a :class:`common.io.check_manifest.CheckManifest` there,
    so a restart re-checks only new files and unusable ones that changed
    (:meth:`~common.io.check_manifest.CheckManifest.check_listing`).
    """
    from common.io.check_manifest import CheckManifest

    manifest = CheckManifest.for_source(cache_dir, report.source)
    problems = manifest.check_listing(paths, threads=CHECK_THREADS)
    if manifest.reused:
        _log.info("%s: %d file verdicts reused from %s, %d files checked", report.source, manifest.reused,
                  manifest.path, manifest.checked)
    report.checked += len(paths)
    good = []
    for path, why in zip(paths, problems):
        if why is None:
            good.append(path)
        else:
            report.add(path, why)
    return good


def settle(report: DataReport, strict: bool, list_file: Optional[str], what: str = "images",
           action: str = "skipped") -> None:
    """Reports ``report``'s problems once; raises :class:`DataError` with ``strict``.

    Args:
      report: the checked source.
      strict: ``--strict-data``: any problem stops the run (before its first step).
      list_file: where the full list is written (None: not written).
      what: the checked items, for the message ("images", "annotations").
      action: what happens to them without ``strict`` ("skipped", "left out of the evaluation").
    """
    if not report.problems:
        _log.info("checked %d %s in %s: all usable", report.checked, what, report.source)
        return
    where = f"; full list: {report.write(list_file)}" if list_file else ""
    if strict:
        raise DataError(f"{report.summary(what)}{where} (--strict-data: fix or remove them, "
                        "or drop --strict-data to skip them)")
    _log.warning("%s%s. They are %s (--strict-data makes this an error).", report.summary(what), where, action)


# ------------------------------------------------------------------ inference
def for_each_image(paths: Sequence[str], handle: Callable[[str], None]) -> List[Tuple[str, str]]:
    """``handle(path)`` for every path; one that is unusable or fails to decode is named and skipped.

    Each failure is printed at once as ``error: <path>: <why> (skipped)`` on stderr and the
    remaining images are still processed.

    Returns:
      ``(path, why)`` of the failed images (empty: all done).
    """
    import tensorflow as tf

    failures = []
    for path in paths:
        why = image_problem(path)
        if why is None:
            try:
                handle(path)
                continue
            except (tf.errors.OpError, ValueError, OSError) as err:
                why = " ".join(str(getattr(err, "message", None) or err).split())
        print(f"error: {path}: {why} (skipped)", file=sys.stderr, flush=True)
        failures.append((path, why))
    return failures
