"""What the pre-run image check found, kept in the workspace so a restart re-checks only new or changed files.

A manifest is a text file of ``path<TAB>size<TAB>mtime_ns<TAB>problem<TAB>width<TAB>height`` lines, the unusable
files first, under a header naming the pixel budget it was made under (another budget: nothing is reused) and
the fingerprint of the last folder listing it was made for. Two ways to use it:

* :meth:`CheckManifest.check` (files named by an annotation file): a file whose size and modification time are
  unchanged keeps its verdict; a new, changed or vanished-and-back file is checked again.
* :meth:`CheckManifest.check_listing` (files found by listing a folder just now, so each exists): a usable
  file keeps its verdict without a ``stat`` (300k of them cost 0.9 s here, more than everything else a
  restart does); an unusable one is re-checked when its size or time changed (fixed in place); a new file is
  checked. An unchanged listing (same paths, same order) reads only the unusable files' lines. A usable file
  rewritten in place under the same name is therefore not re-checked: if it no longer decodes, training
  skips and counts it like any file damaged inside its data; delete ``<workspace>/data_cache`` to re-check all.

A damaged or unreadable manifest is ignored (everything is checked) and rewritten; a path holding a tab or a
line break is never stored (always checked).

    manifest = CheckManifest.for_source(cache_dir, "/data/train")
    verdicts = manifest.check(paths)     # [(problem or None, (w, h) or None)], like data_check.inspect_image
    problems = manifest.check_listing(paths)   # [problem or None]
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

_LOG = logging.getLogger(__name__)
FOLDER = "data_cache"  # inside the workspace
_HEADER = "# image check manifest v2, pixel budget "
_LISTING = "# listing "  # + fingerprint of the paths (check_listing) or "-"
_USABLE = "# usable"  # the usable files' lines follow
Verdict = Tuple[Optional[str], Optional[Tuple[int, int]]]
Entry = Tuple[int, int, Optional[str], Optional[Tuple[int, int]]]  # size, mtime_ns, problem, dims


def _storable(path: str) -> bool:
    return "\t" not in path and "\n" not in path and "\r" not in path


def listing_key(paths: Sequence[str]) -> str:
    """Fingerprint of a folder listing (the paths, in order): sha1 of their newline-joined bytes."""
    return hashlib.sha1("\n".join(paths).encode("utf-8", "surrogateescape")).hexdigest()


def _stat(path: str) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


IO_BOUND_SECONDS = 100e-6  # per file: slower than this, the files are not in the page cache: use threads


def _in_batches(function: Callable, items: Sequence, threads: int, batch: int = 512) -> list:
    """``[function(item) for item in items]``: the first ``batch`` items inline, the rest inline too when those
    took under :data:`IO_BOUND_SECONDS` each (page-cached files: threads only fight over the GIL, measured 2.8x
    slower with 16 than with 1 for 30k files), else on ``threads`` threads, ``batch`` items per task."""
    start = time.perf_counter()
    results = [function(item) for item in items[:batch]]
    if len(items) <= batch or (time.perf_counter() - start) / batch < IO_BOUND_SECONDS:
        return results + [function(item) for item in items[batch:]]
    chunks = [items[first:first + batch] for first in range(batch, len(items), batch)]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return results + [result for chunk in pool.map(lambda part: [function(item) for item in part], chunks)
                          for result in chunk]


class CheckManifest:
    """Verdicts of earlier checks of one data source (a folder or an annotation file's image folder).

    Attributes:
      path: the manifest file (None: nothing is kept, every file is checked).
      reused, checked: files whose verdict was reused / checked by the last :meth:`check` or
        :meth:`check_listing`.
    """

    def __init__(self, path: Optional[str]):
        self.path = path
        self.reused = self.checked = 0

    @classmethod
    def for_source(cls, cache_dir: Optional[str], source: str) -> "CheckManifest":
        """The manifest of ``source`` in ``<cache_dir>/data_cache`` (``cache_dir`` None: none kept)."""
        if not cache_dir:
            return cls(None)
        key = hashlib.sha1(os.path.abspath(source).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return cls(os.path.join(cache_dir, FOLDER, f"checked-{key}.tsv"))

    def _load(self, budget: int, listing: Optional[str] = None) -> Tuple[Dict[str, Entry], bool]:
        """``(entries by path, same listing)``; with an unchanged ``listing`` fingerprint only the unusable
        files' entries are read (the others are usable)."""
        if not self.path or not os.path.isfile(self.path):
            return {}, False
        known = {}
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                if f.readline().rstrip("\n") != f"{_HEADER}{budget}":
                    return {}, False
                same = listing is not None and f.readline().rstrip("\n") == f"{_LISTING}{listing}"
                for line in f:
                    if line == f"{_USABLE}\n":  # never a file's line: those hold five tabs
                        if same:
                            break
                        continue
                    fields = line.rstrip("\n").split("\t")
                    if len(fields) == 6:
                        path, size, mtime, problem, width, height = fields
                        dims = (int(width), int(height)) if width else None
                        known[path] = (int(size), int(mtime), problem or None, dims)
        except (OSError, ValueError, UnicodeDecodeError) as err:
            _LOG.warning("image check manifest %s is unreadable (%s): checking every file again", self.path, err)
            return {}, False
        return known, same

    def _save(self, budget: int, entries: Dict[str, Entry], listing: Optional[str] = None) -> None:
        """Writes ``entries`` (path -> size, mtime_ns, problem, dims), the unusable ones first."""
        tmp = f"{self.path}.tmp-{os.getpid()}"
        rows = sorted(((problem is None, path, size, mtime, problem, dims)
                       for path, (size, mtime, problem, dims) in entries.items() if _storable(path)),
                      key=lambda row: row[0])  # stable: the usable files keep their order
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(f"{_HEADER}{budget}\n{_LISTING}{listing or '-'}\n")
                usable_started = False
                for usable, path, size, mtime, problem, dims in rows:
                    if usable and not usable_started:
                        f.write(f"{_USABLE}\n")
                        usable_started = True
                    problem = " ".join((problem or "").split())
                    width, height = dims if dims else ("", "")
                    f.write(f"{path}\t{size}\t{mtime}\t{problem}\t{width}\t{height}\n")
            os.replace(tmp, self.path)
        except OSError as err:  # a read-only or full workspace: the run goes on, the next start checks again
            _LOG.warning("image check manifest not written to %s (%s)", self.path, err)
            if os.path.exists(tmp):
                os.remove(tmp)

    def check(self, paths: Sequence[str], inspect: Optional[Callable[[str], Verdict]] = None,
              threads: int = 16) -> List[Verdict]:
        """``inspect(path)`` of each path (order kept), reusing the manifest's verdict of each unchanged file.

        Args:
          paths: the files.
          inspect: path -> ``(problem or None, (width, height) or None)``; default
            :func:`common.io.data_check.inspect_image`.
          threads: files inspected at once (I/O bound).
        """
        from common.io import data_check, pixel_budget

        inspect = inspect or data_check.inspect_image
        budget = pixel_budget.max_pixels()
        known, _ = self._load(budget)
        stats = _in_batches(_stat, paths, threads)
        verdicts: List[Optional[Verdict]] = [None] * len(paths)
        todo = []
        for i, (path, stat) in enumerate(zip(paths, stats)):
            entry = known.get(path)
            if stat is not None and entry is not None and entry[:2] == stat:
                verdicts[i] = entry[2:]
            else:
                todo.append(i)
        for i, verdict in zip(todo, _in_batches(inspect, [paths[i] for i in todo], threads)):
            verdicts[i] = verdict
        self.reused, self.checked = len(paths) - len(todo), len(todo)
        if self.path and todo:
            self._save(budget, {p: (*s, *v) for p, s, v in zip(paths, stats, verdicts) if s is not None})
        return verdicts

    def check_listing(self, paths: Sequence[str], inspect: Optional[Callable[[str], Verdict]] = None,
                      threads: int = 16) -> List[Optional[str]]:
        """The problem of each path (None: usable; order kept) for files a folder listing found just now.

        A usable file keeps its verdict unread (no ``stat``); an unusable one is checked again when its size
        or time changed; a new one is checked (see the module docstring).

        Args:
          paths: the listed files (each exists).
          inspect, threads: as in :meth:`check`.
        """
        from common.io import data_check, pixel_budget

        inspect = inspect or data_check.inspect_image
        budget = pixel_budget.max_pixels()
        listing = listing_key(paths)
        known, same = self._load(budget, listing)
        problems: List[Optional[str]] = [None] * len(paths)
        todo, get = [], known.get
        for i, path in enumerate(paths):
            entry = get(path)
            if entry is None:
                if not same or not _storable(path):
                    todo.append(i)
            elif entry[2] is not None:
                if _stat(path) == entry[:2]:
                    problems[i] = entry[2]
                else:
                    todo.append(i)
        checked = [(paths[i], _stat(paths[i]), verdict) for i, verdict in
                   zip(todo, _in_batches(inspect, [paths[i] for i in todo], threads))]
        for i, (_, _, (problem, _)) in zip(todo, checked):
            problems[i] = problem
        self.reused, self.checked = len(paths) - len(todo), len(todo)
        if self.path and (todo or not same):
            if same:  # the usable files' lines were not read
                known, _ = self._load(budget)
            listed = set(paths) if not same else None
            entries = {p: e for p, e in known.items() if listed is None or p in listed}
            entries.update({p: (*s, *v) for p, s, v in checked if s is not None})
            self._save(budget, entries, listing)
        return problems
