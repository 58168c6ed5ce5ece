"""``--val-split F``: a validation split held out of a single annotated set, by image, seeded, kept in the run.

For users with one annotation file: a share ``F`` of its images (at least one) is drawn with ``--seed`` and written
as ``<workspace>/val_split/instances_{train,val}.json`` (the same categories, the images and annotations of each
side, file names unchanged, so both read the same image folder). A run that finds these files uses them as they
are: ``--resume`` and ``main.py eval --workspace`` score the images the run never trained on, whatever the flags
say now.
"""
from __future__ import annotations

import json
import logging
import os
import random
from typing import Tuple

FOLDER = "val_split"
_LOG = logging.getLogger(__name__)


def split_files(workspace: str) -> Tuple[str, str]:
    """``(train JSON, val JSON)`` of a run's split (they may not exist yet)."""
    folder = os.path.join(workspace, FOLDER)
    return os.path.join(folder, "instances_train.json"), os.path.join(folder, "instances_val.json")


def draw(image_ids, fraction: float, seed: int) -> set:
    """The held-out image ids: ``round(fraction * n)`` of them (at least 1, at most n - 1), a seeded draw."""
    ids = sorted(image_ids)
    if len(ids) < 2:
        raise ValueError(f"--val-split needs at least 2 annotated images (found {len(ids)})")
    count = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    return set(random.Random(seed).sample(ids, count))


def split_annotations(annotation_file: str, fraction: float, seed: int, workspace: str) -> Tuple[str, str]:
    """The run's ``(train JSON, val JSON)``: reused when the run has them, else drawn from ``annotation_file``
    and written (atomically)."""
    train_file, val_file = split_files(workspace)
    if os.path.isfile(train_file) and os.path.isfile(val_file):
        _LOG.info("--val-split: the run's own split (%s)", os.path.dirname(val_file))
        return train_file, val_file
    with open(annotation_file) as handle:
        coco = json.load(handle)
    held = draw([image["id"] for image in coco["images"]], fraction, seed)
    os.makedirs(os.path.dirname(train_file), exist_ok=True)
    for path, keep in ((train_file, lambda i: i not in held), (val_file, lambda i: i in held)):
        part = {**coco, "images": [im for im in coco["images"] if keep(im["id"])],
                "annotations": [a for a in coco["annotations"] if keep(a["image_id"])]}
        with open(path + ".tmp", "w") as handle:
            json.dump(part, handle)
        os.replace(path + ".tmp", path)
    print(f"--val-split {fraction}: {len(held)} of {len(coco['images'])} images of {annotation_file} held out for "
          f"validation (seed {seed}; kept in {os.path.dirname(val_file)})", flush=True)
    return train_file, val_file
