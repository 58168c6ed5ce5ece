"""A COCO instances file as columns of arrays: parsed once (streamed, bounded memory), cached, reloaded in seconds.

Shape glossary
  I  images listed;  A  annotations kept (usable ones, in image-id order, file order within an image)
  P  polygons of the kept annotations

:func:`load` streams the JSON (:mod:`common.io.json_stream`: one annotation at a time, never the whole file
as Python objects), checks each annotation (:func:`annotation_problem`) and keeps the usable ones as arrays:
ids, boxes, areas, crowd flags, categories, and their segmentations: polygon coordinates ``float64`` in one
flat array (exact), RLE counts as bytes. Annotations with a problem are kept only as ``(annotation id, image
id, why)``. With a ``cache_dir`` (the workspace) the result is written to
``<cache_dir>/data_cache/coco-<key>/`` (coordinates in a raw file that is memory-mapped, so they cost page
cache rather than process memory) and the next start with an unchanged file (same path, size, modification
time and SHA-256 of its first and last MiB) loads it instead of parsing. A damaged cache is named, ignored and
rebuilt.
"""
from __future__ import annotations

import array
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
from typing import Optional

import numpy as np

from common.io import json_stream
from common.io.check_manifest import FOLDER as CACHE_FOLDER  # one workspace folder for every data cache

_LOG = logging.getLogger(__name__)
FORMAT = 1
_REQUIRED_KEYS = {
    "images": ("id", "file_name", "height", "width"),
    "annotations": ("image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}
NO_SEGMENTATION, POLYGONS, RLE_STRING, RLE_COUNTS = 0, 1, 2, 3
_ARRAYS = ("image_ids", "heights", "widths", "name_bytes", "name_offsets", "ann_ids", "ann_images",
           "ann_categories", "crowd", "areas", "bboxes", "seg_kinds", "poly_ranges", "poly_spans",
           "rle_bytes", "rle_spans", "rle_sizes")


@dataclasses.dataclass
class CocoColumns:
    """The parsed file. Images ``[I]`` sorted by id; annotations ``[A]`` (usable ones only).

    Attributes:
      categories: the category dicts sorted by id.
      problems: ``(annotation id, image id, why)`` of each unusable annotation, in file order.
      image_ids, heights, widths: ``[I] int64``.
      name_bytes, name_offsets: the UTF-8 file names, ``name_bytes[name_offsets[i]:name_offsets[i + 1]]``.
      ann_ids, ann_images, ann_categories: ``[A] int64`` annotation id (its position + 1 when absent), image
        id, COCO category id.
      crowd: ``[A] bool``.  areas: ``[A] float64`` (NaN: not given).  bboxes: ``[A, 4] float64`` COCO xywh.
      seg_kinds: ``[A] int8`` :data:`NO_SEGMENTATION`, :data:`POLYGONS`, :data:`RLE_STRING`, :data:`RLE_COUNTS`.
      poly_ranges: ``[A + 1] int64`` polygons of annotation ``a``: ``poly_spans[poly_ranges[a]:poly_ranges[a + 1]]``.
      poly_spans: ``[P, 2] int64`` where polygon ``p``'s coordinates are in ``coords`` (start, end).
      coords: ``[2 * points] float64`` x, y of every polygon (memory-mapped when cached).
      rle_bytes, rle_spans, rle_sizes: RLE counts (UTF-8 string, or int64 little-endian counts) of
        annotation ``a`` in ``rle_bytes[start:end]``, ``rle_spans [A, 2]``; ``rle_sizes [A, 2]`` its size.
    """

    categories: list
    problems: list
    image_ids: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    name_bytes: np.ndarray
    name_offsets: np.ndarray
    ann_ids: np.ndarray
    ann_images: np.ndarray
    ann_categories: np.ndarray
    crowd: np.ndarray
    areas: np.ndarray
    bboxes: np.ndarray
    seg_kinds: np.ndarray
    poly_ranges: np.ndarray
    poly_spans: np.ndarray
    coords: np.ndarray
    rle_bytes: np.ndarray
    rle_spans: np.ndarray
    rle_sizes: np.ndarray

    def name(self, row: int) -> str:
        return bytes(self.name_bytes[self.name_offsets[row]:self.name_offsets[row + 1]]).decode("utf-8")

    def segmentation(self, row: int):
        """Annotation ``row``'s segmentation as COCO writes it (None when it has none)."""
        kind = self.seg_kinds[row]
        if kind == POLYGONS:
            spans = self.poly_spans[self.poly_ranges[row]:self.poly_ranges[row + 1]]
            return [self.coords[start:end].tolist() for start, end in spans]
        if kind in (RLE_STRING, RLE_COUNTS):
            start, end = self.rle_spans[row]
            data = bytes(self.rle_bytes[start:end])
            counts = data.decode("utf-8") if kind == RLE_STRING else np.frombuffer(data, "<i8").tolist()
            return {"size": self.rle_sizes[row].tolist(), "counts": counts}
        return None


# ------------------------------------------------------------------ checks
def _finite(values, count: Optional[int] = None) -> bool:
    """``values`` is a list of ``count`` (any number if None) finite numbers. C loops: the conversion refuses
    anything but numbers, and a NaN or infinity makes the sum NaN or infinite."""
    if not isinstance(values, list) or (count is not None and len(values) != count):
        return False
    try:
        total = sum(array.array("d", values))
    except (TypeError, OverflowError):
        return False
    return total - total == 0.0


def shape_problem(ann: dict) -> str:
    """Why annotation ``ann`` cannot be used whatever its image and category ("" if it can).

    Zero-area and out-of-image boxes are not problems here: ``coco.coco_boxes`` drops them.
    """
    if type(ann["category_id"]) is not int:
        return f"unknown category id {ann['category_id']!r}"
    if not _finite(ann["bbox"], 4):
        return f"bbox {ann['bbox']!r} is not 4 finite numbers"
    if ann["bbox"][2] < 0 or ann["bbox"][3] < 0:
        return f"bbox {ann['bbox']!r} has a negative width or height"
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not _finite(polygon) or len(polygon) < 6 or len(polygon) % 2:
                return f"polygon with fewer than 3 points or bad coordinates: {str(polygon)[:60]}"
    elif isinstance(segmentation, dict):
        counts, size = segmentation.get("counts"), segmentation.get("size")
        if counts is None or not _finite(size, 2) or any(type(v) is not int or v < 0 for v in size):
            return f"RLE of size {size} without counts or a [height, width] size"
        if not isinstance(counts, str) and not (isinstance(counts, list) and all(
                type(c) is int and 0 <= c < 2 ** 62 for c in counts)):
            return "RLE counts are neither a string nor a list of non-negative integers"
    return ""


def _check_entry(entry, section: str, name: str) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{name}: an entry of '{section}' is not an object: {str(entry)[:200]}")
    missing = [k for k in _REQUIRED_KEYS[section] if k not in entry]
    if missing:
        raise ValueError(f"{name}: an entry of '{section}' lacks {missing}: {str(entry)[:200]}")


def _image_row(image, name: str) -> tuple:
    _check_entry(image, "images", name)
    if type(image["id"]) is not int:
        raise ValueError(f"{name}: image id {image['id']!r} is not an integer")
    for key in ("height", "width"):
        if type(image[key]) is not int or image[key] <= 0:
            raise ValueError(f"{name}: image id {image['id']}: {key} {image[key]!r} is not a positive integer")
    file_name = image["file_name"]
    return image["id"], image["height"], image["width"], file_name if isinstance(file_name, str) else None


# ------------------------------------------------------------------ parsing
class _Builder:
    """Accumulates the annotations while they stream by (coordinates to ``coords_file`` if given).

    Each annotation's own structure is checked as it comes (:func:`shape_problem`); whether its image is listed,
    its category known and its RLE of its image's size is decided at the end (those sections may come later).
    """

    def __init__(self, name: str, coords_file=None):
        self.name, self.coords_file = name, coords_file
        self.rejected: list = []  # (position, annotation id, image id, category id, why)
        self.ints = {k: array.array("q") for k in ("position", "ann_ids", "ann_images", "ann_categories",
                                                    "seg_kinds", "poly_first", "poly_count", "poly_spans",
                                                    "rle_spans", "rle_sizes")}
        self.floats = {k: array.array("d") for k in ("areas", "bboxes")}
        self.crowd = array.array("b")
        self.coords = array.array("d")
        self.rle = bytearray()
        self.points = self.count = 0

    def add(self, ann) -> None:
        _check_entry(ann, "annotations", self.name)
        self.count += 1
        ann_id = ann.get("id", self.count)
        why = "" if type(ann["image_id"]) is int else "unlisted"
        why = why or shape_problem(ann)
        if why:
            self.rejected.append((self.count, ann_id, ann["image_id"], ann["category_id"], why))
        else:
            self._keep(ann, ann_id if type(ann_id) is int else self.count)

    def _keep(self, ann, ann_id: int) -> None:
        ints = self.ints
        ints["position"].append(self.count)
        ints["ann_ids"].append(ann_id)
        ints["ann_images"].append(ann["image_id"])
        ints["ann_categories"].append(ann["category_id"])
        self.crowd.append(1 if ann.get("iscrowd") else 0)
        area = ann.get("area")
        self.floats["areas"].append(float(area) if type(area) in (int, float) else math.nan)
        self.floats["bboxes"].extend(ann["bbox"])
        segmentation = ann.get("segmentation")
        kind, rle, size = NO_SEGMENTATION, b"", (0, 0)
        ints["poly_first"].append(len(ints["poly_spans"]) // 2)
        if isinstance(segmentation, list) and segmentation:
            kind = POLYGONS
            for polygon in segmentation:
                self.coords.extend(polygon)
                ints["poly_spans"].extend((self.points, self.points + len(polygon)))
                self.points += len(polygon)
            if self.coords_file is not None and len(self.coords) >= 1 << 20:
                self._flush()
        elif isinstance(segmentation, dict):
            counts, size = segmentation["counts"], segmentation["size"]
            kind = RLE_STRING if isinstance(counts, str) else RLE_COUNTS
            rle = counts.encode("utf-8") if kind == RLE_STRING else np.asarray(counts, "<i8").tobytes()
        ints["poly_count"].append(len(segmentation) if kind == POLYGONS else 0)
        ints["seg_kinds"].append(kind)
        ints["rle_spans"].extend((len(self.rle), len(self.rle) + len(rle)))
        self.rle += rle
        ints["rle_sizes"].extend(size)

    def _flush(self) -> None:
        self.coords.tofile(self.coords_file)
        del self.coords[:]

    def coordinates(self) -> Optional[np.ndarray]:
        """The polygon coordinates in memory; None when they went to ``coords_file`` (flushed now)."""
        if self.coords_file is not None:
            self._flush()
            self.coords_file.flush()
            return None
        return np.frombuffer(self.coords, np.float64) if len(self.coords) else np.zeros(0)

    def columns(self, images: list, categories: list, coords: Optional[np.ndarray]) -> CocoColumns:
        """The finished columns: images sorted by id; the annotations whose image is listed, category known and
        RLE of the right size, stably sorted by image id; the others in ``problems`` (file order)."""
        images.sort(key=lambda image: image[0])
        image_ids = np.array([i[0] for i in images], np.int64)
        sizes = np.array([i[1:3] for i in images], np.int64).reshape(-1, 2)
        known = np.array(sorted(c["id"] for c in categories), np.int64)
        a = {k: np.frombuffer(v, np.int64) if len(v) else np.zeros(0, np.int64) for k, v in self.ints.items()}
        slot = np.clip(np.searchsorted(image_ids, a["ann_images"]), 0, max(len(image_ids) - 1, 0))
        listed = (image_ids[slot] == a["ann_images"]) if len(image_ids) else np.zeros(len(slot), bool)
        rle_sizes = a["rle_sizes"].reshape(-1, 2)
        kinds = a["seg_kinds"]
        rle_ok = ~np.isin(kinds, (RLE_STRING, RLE_COUNTS)) | np.all(rle_sizes == sizes[slot], axis=1) \
            if len(image_ids) else np.ones(len(slot), bool)
        usable = listed & np.isin(a["ann_categories"], known) & rle_ok
        problems = self._problems(a, usable, listed, set(known.tolist()), image_ids, sizes, slot)
        order = np.flatnonzero(usable)[np.argsort(a["ann_images"][usable], kind="stable")]
        first, count = a["poly_first"][order], a["poly_count"][order]
        spans = a["poly_spans"].reshape(-1, 2)
        # Polygon k of annotation a (new order) is polygon first[a] + k of the file order; coordinates stay put.
        index = np.repeat(first - np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64), count) + \
            np.arange(int(count.sum()), dtype=np.int64)
        names = [(n or "").encode("utf-8", "surrogatepass") for n in (i[3] for i in images)]
        floats = {k: np.frombuffer(v, np.float64) if len(v) else np.zeros(0) for k, v in self.floats.items()}
        return CocoColumns(
            categories=sorted(categories, key=lambda c: c["id"]), problems=problems,
            image_ids=image_ids, heights=sizes[:, 0].copy(), widths=sizes[:, 1].copy(),
            name_bytes=np.frombuffer(b"".join(names), np.uint8).copy(),
            name_offsets=np.concatenate([[0], np.cumsum([len(n) for n in names], dtype=np.int64)]).astype(np.int64),
            ann_ids=a["ann_ids"][order], ann_images=a["ann_images"][order],
            ann_categories=a["ann_categories"][order], crowd=np.frombuffer(self.crowd, np.int8).astype(bool)[order],
            areas=floats["areas"][order], bboxes=floats["bboxes"].reshape(-1, 4)[order],
            seg_kinds=kinds.astype(np.int8)[order], poly_ranges=np.concatenate([[0], np.cumsum(count)]).astype(np.int64),
            poly_spans=spans[index] if len(index) else np.zeros((0, 2), np.int64), coords=coords,
            rle_bytes=np.frombuffer(bytes(self.rle), np.uint8), rle_spans=a["rle_spans"].reshape(-1, 2)[order],
            rle_sizes=rle_sizes[order])

    def _problems(self, a, usable, listed, known, image_ids, sizes, slot) -> list:
        """``(annotation id, image id or None, why)`` of every unusable annotation, in file order."""
        listed_ids = set(image_ids.tolist())
        found = []
        for position, ann_id, image_id, category_id, why in self.rejected:
            if type(image_id) is not int or image_id not in listed_ids:
                found.append((position, ann_id, None, f"refers to image id {image_id!r}, which is not listed"))
            elif type(category_id) is not int or category_id not in known:
                found.append((position, ann_id, image_id, f"unknown category id {category_id!r}"))
            else:
                found.append((position, ann_id, image_id, why))
        for i in np.flatnonzero(~usable):
            ann_id, image_id, category_id = (int(a[k][i]) for k in ("ann_ids", "ann_images", "ann_categories"))
            if not listed[i]:
                why, image_id = f"refers to image id {image_id!r}, which is not listed", None
            elif category_id not in known:
                why = f"unknown category id {category_id!r}"
            else:
                why = (f"RLE of size {a['rle_sizes'].reshape(-1, 2)[i].tolist()} on an image of size "
                       f"{sizes[slot[i]].tolist()}")
            found.append((int(a["position"][i]), ann_id, image_id, why))
        found.sort(key=lambda problem: problem[0])
        return [problem[1:] for problem in found]


def parse(path: str, coords_file=None) -> CocoColumns:
    """Streams ``path`` into :class:`CocoColumns` (``coords_file``: an open binary file the coordinates are
    written to, for the caller to map; else they stay in memory).

    Raises:
      FileNotFoundError: the file does not exist (the message names it).
      ValueError: not JSON, or a missing/ill-typed section or key, or duplicate ids (names the file).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    builder, found = _Builder(path, coords_file), {}
    try:
        with open(path, encoding="utf-8") as handle:
            for key, value in json_stream.top_level(handle, path, stream=("images", "annotations")):
                if key == "images" and isinstance(value, json_stream.ListItems):
                    found[key] = [_image_row(image, path) for image in value]
                elif key == "annotations" and isinstance(value, json_stream.ListItems):
                    found[key] = True
                    for ann in value:
                        builder.add(ann)
                elif key in _REQUIRED_KEYS:
                    found[key] = value
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: not UTF-8 text ({err.reason})") from None
    for section in _REQUIRED_KEYS:
        if section not in found or not isinstance(found[section], (list, bool)):
            got = type(found.get(section)).__name__
            raise ValueError(f"{path}: expected a list under '{section}', got {got}.")
    images, categories = found["images"], found["categories"]
    for category in categories:
        _check_entry(category, "categories", path)
        if type(category["id"]) is not int:
            raise ValueError(f"{path}: category id {category['id']!r} is not an integer")
    for what, ids in (("image", [i[0] for i in images]), ("category", [c["id"] for c in categories])):
        if len(set(ids)) != len(ids):
            raise ValueError(f"{path}: duplicate {what} ids.")
    return builder.columns(images, categories, builder.coordinates())


# ------------------------------------------------------------------ cache
def _key(path: str) -> dict:
    """What identifies the file's content: path, size, modification time, SHA-256 of its first and last MiB."""
    st = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        if st.st_size > 2 << 20:
            handle.seek(-(1 << 20), os.SEEK_END)
        digest.update(handle.read(1 << 20))
    return {"format": FORMAT, "path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256_head_tail": digest.hexdigest()}


def cache_folder(cache_dir: str, path: str) -> str:
    name = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, CACHE_FOLDER, f"coco-{name}")


def _read_cache(folder: str, key: dict) -> Optional[CocoColumns]:
    """The cached columns when ``folder`` holds them for ``key`` (None: absent or stale)."""
    meta_file = os.path.join(folder, "meta.json")
    if not os.path.isfile(meta_file):
        return None
    with open(meta_file) as f:
        meta = json.load(f)
    if meta.get("key") != key:
        return None
    with np.load(os.path.join(folder, "columns.npz"), allow_pickle=False) as arrays:
        values = {name: arrays[name] for name in _ARRAYS}
    points = int(meta["points"])
    coords_file = os.path.join(folder, "coords.f64")
    if os.path.getsize(coords_file) != 8 * points:
        raise ValueError(f"{coords_file} holds {os.path.getsize(coords_file)} bytes, {8 * points} expected")
    coords = np.memmap(coords_file, np.float64, "r", shape=(points,)) if points else np.zeros(0)
    spans = values["poly_spans"]
    if len(spans) and (spans.min() < 0 or spans.max() > points):
        raise ValueError(f"{folder}: polygon spans outside the coordinates")
    problems = [tuple(p) for p in meta["problems"]]
    return CocoColumns(categories=meta["categories"], problems=problems, coords=coords, **values)


def _write_cache(folder: str, key: dict, columns: CocoColumns, coords_tmp: str) -> None:
    """Writes ``columns`` to ``folder`` atomically (a new folder renamed into place); ``coords_tmp`` is the
    coordinate file the parse wrote, moved in."""
    tmp = f"{folder}.tmp-{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    np.savez(os.path.join(tmp, "columns.npz"), **{name: getattr(columns, name) for name in _ARRAYS})
    os.replace(coords_tmp, os.path.join(tmp, "coords.f64"))
    points = os.path.getsize(os.path.join(tmp, "coords.f64")) // 8
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump({"key": key, "points": points, "categories": columns.categories,
                   "problems": [list(p) for p in columns.problems]}, f)
    old = f"{folder}.old-{os.getpid()}"
    if os.path.isdir(folder):
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(folder: str) -> None:
    """Deletes what a killed parse left next to ``folder`` (``.tmp-PID``, ``.old-PID``, ``.coords-PID`` of
    processes that are gone); another process's work in progress is left alone."""
    parent, base = os.path.split(folder)
    for name in os.listdir(parent):
        stem, _, pid = name.rpartition("-")
        if stem not in (f"{base}.tmp", f"{base}.old", f"{base}.coords") or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # alive
        except ProcessLookupError:
            pass
        except OSError:
            continue  # alive, another user's
        target = os.path.join(parent, name)
        shutil.rmtree(target, ignore_errors=True) if os.path.isdir(target) else os.remove(target)


def load(path: str, cache_dir: Optional[str] = None) -> CocoColumns:
    """The columns of COCO file ``path``: from ``cache_dir``'s cache when it holds this file unchanged, else
    parsed (and cached there). ``cache_dir`` None: parsed, nothing written.

    Raises:
      FileNotFoundError, ValueError: as :func:`parse`.
    """
    if not cache_dir:
        return parse(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    key, folder = _key(path), cache_folder(cache_dir, path)
    try:
        columns = _read_cache(folder, key)
        if columns is not None:
            _LOG.info("%s: parsed form reused from %s", path, folder)
            return columns
    except Exception as err:  # noqa: BLE001 - whatever the damage (zip, JSON, sizes), the cure is to parse again
        _LOG.warning("the parsed-annotation cache %s is damaged (%s): parsing %s again", folder, err, path)
    try:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        _remove_leftovers(folder)
        coords_tmp = f"{folder}.coords-{os.getpid()}"
        with open(coords_tmp, "wb") as coords_file:
            parsed = parse(path, coords_file)
        points = os.path.getsize(coords_tmp) // 8
        # Mapped, not read: the pages belong to the page cache; the mapping survives the move into the cache.
        parsed.coords = np.memmap(coords_tmp, np.float64, "r", shape=(points,)) if points else np.zeros(0)
    except OSError as err:  # a read-only or full workspace: parse in memory, nothing cached
        _LOG.warning("the parsed-annotation cache cannot be written in %s (%s)", folder, err)
        return parse(path)
    try:
        _write_cache(folder, key, parsed, coords_tmp)
    except OSError as err:
        _LOG.warning("the parsed-annotation cache was not written to %s (%s)", folder, err)
    finally:
        if os.path.exists(coords_tmp):
            os.remove(coords_tmp)
    return parsed
