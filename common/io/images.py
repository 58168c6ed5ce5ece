"""Image files on disk: the one extension list and the one (recursive) listing."""
from __future__ import annotations

import os
from typing import List, Sequence

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def is_image_file(name: str) -> bool:
    """JPEG/PNG by extension (any case), hidden files excluded."""
    base = os.path.basename(name)
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def _walk(folder: str) -> List[str]:
    """Sorted JPEG/PNG paths under ``folder`` (recursive, links followed, hidden folders skipped)."""
    paths = []
    for parent, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        prefix = os.path.join(parent, "")  # names straight from the folder: no basename needed
        paths += [prefix + f for f in files if f[:1] != "." and f.lower().endswith(IMAGE_EXTENSIONS)]
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
