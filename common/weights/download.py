"""Fetches a registered weights file once into the cache: resumable, verified, atomic, one-line errors.

The cache is ``$TF2VISION_HOME/weights`` (default ``~/.cache/tf2vision/weights``). A download goes to
``<file>.part`` (resumed with an HTTP ``Range`` request if a previous one was cut), is checked
against the publisher's digest (:mod:`common.weights.registry`), then moved into place with
``os.replace``; ``<file>.sha256`` records the verified digest, so a later run reads the file
without a request or a re-hash. A file put at the cache path by hand (offline machines) is
verified on first use the same way. ``TF2VISION_WEIGHTS_URL`` replaces the publishers' hosts
with a mirror (``<mirror>/<file name>``); the tests point it at a server on 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Callable, Optional

from common.command.errors import UserError
from common.weights.registry import Weights

HOME_ENV = "TF2VISION_HOME"
MIRROR_ENV = "TF2VISION_WEIGHTS_URL"
CHUNK = 1 << 20
TIMEOUT_S = 30


class DownloadError(UserError, OSError):
    """A download failed or did not verify (one line: the URL, the reason, where to put the file by hand)."""


def home() -> str:
    """``$TF2VISION_HOME`` or ``~/.cache/tf2vision``."""
    return os.path.expanduser(os.environ.get(HOME_ENV) or os.path.join("~", ".cache", "tf2vision"))


def cache_path(entry: Weights) -> str:
    """Where ``entry`` lives once fetched (and where to put it by hand)."""
    return os.path.join(home(), "weights", entry.filename)


def source_url(entry: Weights) -> str:
    """The publisher's URL, or ``$TF2VISION_WEIGHTS_URL/<file name>``."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{entry.filename}" if mirror else entry.url


def fetch(entry: Weights, progress: bool = True) -> str:
    """The verified local copy of ``entry`` (downloaded on first use); returns its path.

    Raises:
      DownloadError: offline, HTTP error, disk full, or a digest mismatch (the bad file is deleted).
    """
    path = cache_path(entry)
    if os.path.isfile(path) and os.path.isfile(path + ".sha256"):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with _locked(path + ".lock"):
        if os.path.isfile(path) and not os.path.isfile(path + ".sha256"):  # put there by hand
            _record(path, _verify(entry, path, where=path))
        if not os.path.isfile(path):
            _download(entry, path, progress)
    return path


def _download(entry: Weights, path: str, progress: bool) -> None:
    url, part = source_url(entry), path + ".part"
    try:
        _transfer(url, part, _progress_printer(entry.name) if progress else None)
        digest = _verify(entry, part, where=url)
        os.replace(part, path)
        _record(path, digest)
    except DownloadError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
        raise DownloadError(f"cannot download {entry.name} from {url} ({reason}): download it elsewhere and put it "
                            f"at {path} (or set {MIRROR_ENV} to a mirror)") from None


def _transfer(url: str, part: str, report: Optional[Callable[[int, int], None]]) -> None:
    """Appends ``url``'s bytes to ``part``, resuming after what it holds when the server honours ``Range``."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (registered https URLs)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not have:  # 416: the part is already whole
            raise
        return
    with response:
        if have and response.status != 206:
            have = 0  # no resume support: start over
        total = have + int(response.headers.get("Content-Length") or 0)
        with open(part, "ab" if have else "wb") as out:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                have += len(chunk)
                if report:
                    report(have, total)
    if total and have < total:
        raise OSError(f"connection closed after {have} of {total} bytes; run again to resume")


def _digests(path: str):
    sha, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324 (md5 is the publisher's, for integrity)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _verify(entry: Weights, path: str, where: str) -> str:
    """The file's sha256 when it matches the entry's published digests; else deletes it and raises."""
    sha, md5 = _digests(path)
    wrong = None
    if entry.sha256 and not sha.startswith(entry.sha256.lower()):
        wrong = f"sha256 {sha[:16]}... is not the published {entry.sha256}"
    elif entry.md5 and md5 != entry.md5.lower():
        wrong = f"md5 {md5} is not the published {entry.md5}"
    if wrong:
        os.remove(path)
        raise DownloadError(f"{where}: {wrong}; deleted {path} (a damaged or different file): run again to "
                            "download it anew")
    return sha


def _record(path: str, sha: str) -> None:
    with open(path + ".sha256", "w") as handle:
        handle.write(f"{sha}  {os.path.basename(path)}\n")


@contextlib.contextmanager
def _locked(path: str):
    """One download of a file at a time (other processes wait, then find it cached)."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _progress_printer(name: str) -> Callable[[int, int], None]:
    """A progress line on stderr: rewritten in place on a terminal, every 10 % otherwise."""
    start, shown = time.monotonic(), [-1]
    tty = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        percent = int(100 * done / total) if total else 0
        step = percent if tty else percent // 10 * 10
        if step == shown[0] and done != total:
            return
        shown[0] = step
        rate = done / max(time.monotonic() - start, 1e-3) / 1e6
        sys.stderr.write(("\r" if tty else "") + f"downloading {name}: {percent:3d}% {done / 1e6:.1f}/"
                         f"{total / 1e6:.1f} MB {rate:.1f} MB/s" + ("" if tty and done < total else "\n"))
        sys.stderr.flush()

    return report
