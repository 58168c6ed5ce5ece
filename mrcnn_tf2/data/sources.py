"""Finds the training and validation data of a Mask R-CNN run.

Accepted layouts of ``--data_dir`` (first match wins):

* TFRecords from ``dataset/create_coco_tf_record.py``: ``train*.tfrecord*`` and
  ``val*.tfrecord*`` files; classes come from ``--eval_file`` (the validation
  annotation JSON, NVIDIA's flag).
* COCO layout: ``annotations/instances_<split>*.json`` with images in ``<split>*/``
  (COCO 2017: ``annotations/instances_train2017.json`` + ``train2017/``; the
  synthetic shapes: ``annotations/instances_train.json`` + ``train/``).

Explicit ``--train_annotations/--train_images/--eval_file/--eval_images`` override
what is found, so any COCO-format data set works.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import List, Optional, Union

from common.io import data_check
from common.command.errors import DataError
from mrcnn_tf2.data.coco import CocoDataset

Source = Union[CocoDataset, str]


@dataclasses.dataclass
class DataSources:
    """What the task reads.

    Attributes:
      train: training source (CocoDataset or TFRecord pattern), None for eval-only runs.
      val: validation source.
      eval_file: validation annotation JSON (COCO ground truth for pycocotools; None: ``--no-eval`` on COCO
        training annotations without one).
      class_names: ``["background", ...]`` from the annotation file.
      category_ids: contiguous class -> COCO category id (``[0, ...]``).
      num_train: training images (None if unknown, e.g. TFRecords).
      reference: the validation annotations as a checked ``CocoDataset`` (its ``ground_truth()``
        is what COCO evaluation scores).
    """

    train: Optional[Source]
    val: Optional[Source]
    eval_file: Optional[str]
    class_names: List[str]
    category_ids: List[int]
    num_train: Optional[int] = None
    reference: Optional[CocoDataset] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def find_json(data_dir: str, split: str) -> Optional[str]:
    found = sorted(glob.glob(os.path.join(data_dir, "annotations", f"instances_{split}*.json")))
    return found[0] if found else None


def images_for(data_dir: str, annotation_file: str, split: str) -> str:
    """``train2017/`` for ``instances_train2017.json``; ``train/`` for ``instances_train.json``."""
    suffix = os.path.basename(annotation_file)[len(f"instances_{split}"):-len(".json")]
    folder = os.path.join(data_dir, split + suffix)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder {folder} for {annotation_file} not found; "
                                "pass --train_images/--eval_images")
    return folder


def _tfrecords(data_dir: str, split: str) -> Optional[str]:
    pattern = os.path.join(data_dir, f"{split}*.tfrecord*")
    return pattern if glob.glob(pattern) else None


def resolve_sources(data_dir: Optional[str], *, eval_file: Optional[str] = None,
                    train_annotations: Optional[str] = None, train_images: Optional[str] = None,
                    eval_images: Optional[str] = None, need_train: bool = True, need_val: bool = True,
                    strict: bool = False, report_dir: Optional[str] = None) -> DataSources:
    """Resolves the data of a run (see the module docstring).

    ``need_val=False`` (``train --no-eval``): no validation data is read or required; the class names come
    from the training annotations (or the validation JSON when there is one and training reads TFRecords).

    Every COCO source is checked (``CocoDataset.report``); its problems are reported once by
    :func:`common.io.data_check.settle` (``strict``: an error; ``report_dir``, the workspace: where the full
    lists ``unusable_train.tsv`` / ``unusable_val.tsv`` go, and the parsed annotations and file verdicts are
    kept for the next start, see :class:`mrcnn_tf2.data.coco.CocoDataset`).

    Raises:
      FileNotFoundError: naming what was looked for and where.
      common.command.errors.DataError: ``strict`` and a bad image or annotation.
    """
    if data_dir and not os.path.isdir(data_dir):
        raise FileNotFoundError(f"--data_dir {data_dir} is not a directory")
    train_records = _tfrecords(data_dir, "train") if data_dir else None
    val_records = _tfrecords(data_dir, "val") if data_dir else None
    train_annotations = train_annotations or (None if train_records or not data_dir else find_json(data_dir, "train"))
    eval_file = eval_file or (find_json(data_dir, "val") if data_dir else None)
    missing_val = FileNotFoundError(f"no validation annotations: pass --eval_file (looked for "
                                    f"{data_dir}/annotations/instances_val*.json)")
    if eval_file is None and need_val:
        raise missing_val
    train = _train_source(data_dir, train_records, train_annotations, train_images, report_dir) if need_train else None
    if eval_file is None and not isinstance(train, CocoDataset):
        raise missing_val  # TFRecords name no classes: the validation annotations do
    val = _coco_or_records(data_dir, eval_file, eval_images, val_records, "val", report_dir) if need_val else None
    if isinstance(val, CocoDataset):
        reference = val
    elif need_val or not isinstance(train, CocoDataset):
        reference = CocoDataset(eval_file, eval_images or data_dir or ".", check_files=False, cache_dir=report_dir)
    else:
        reference = train
    for split, source in (("train", train), ("val", reference if need_val else None)):
        if isinstance(source, CocoDataset):
            _settle(source, split, strict, report_dir)
    return DataSources(train=train, val=val, eval_file=eval_file, class_names=reference.class_names,
                       category_ids=reference.category_ids,
                       num_train=len(train) if isinstance(train, CocoDataset) else None, reference=reference)


def _train_source(data_dir: Optional[str], records: Optional[str], annotations: Optional[str],
                  images: Optional[str], cache_dir: Optional[str]) -> Source:
    """The training TFRecords, or the COCO annotations with their image folder."""
    if annotations is None and records is None:
        raise FileNotFoundError(f"no training data in {data_dir}: expected train*.tfrecord files or "
                                "annotations/instances_train*.json (or pass --train_annotations)")
    if annotations is None:
        return records
    if images is None and not data_dir:
        raise FileNotFoundError(f"no image folder for {annotations}: pass --train_images")
    return CocoDataset(annotations, images or images_for(data_dir, annotations, "train"), cache_dir=cache_dir)


def _settle(coco: CocoDataset, split: str, strict: bool, report_dir: Optional[str]) -> None:
    list_file = os.path.join(report_dir, f"unusable_{split}.tsv") if report_dir else None
    action = "left out of training" if split == "train" else "left out of the evaluation (not scored)"
    data_check.settle(coco.report, strict, list_file, what="images and annotations", action=action)
    if not len(coco):
        raise DataError(f"no usable images in {coco.annotation_file} ({coco.image_dir})")


def _coco_or_records(data_dir, eval_file, eval_images, val_records, split, cache_dir) -> Source:
    if eval_images or not val_records:
        return CocoDataset(eval_file, eval_images or images_for(data_dir, eval_file, split), cache_dir=cache_dir)
    return val_records
