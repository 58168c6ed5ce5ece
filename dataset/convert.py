"""Converts annotations from the formats people label in to a COCO data set that Mask R-CNN trains on.

    python -m dataset.convert --from labelme   SRC --out DIR   # a folder of LabelMe JSON files
    python -m dataset.convert --from voc       SRC --out DIR   # a VOC root (Annotations/, SegmentationObject/, ...)
    python -m dataset.convert --from masks     SRC --out DIR   # images/ + masks/<image>/<class>_<k>.png
    python -m dataset.convert --from yolo-seg  SRC --out DIR   # images/, labels/, data.yaml
    ... --val-fraction 0.1 --seed 0                           # hold out a seeded 10 % of the images as val

Writes ``DIR/annotations/instances_<split>.json`` and ``DIR/<split>/`` (images hard-linked or copied), prints the
class -> category id mapping and every source entry it could not use (named, and listed in
``DIR/conversion_skipped.tsv``), then runs the training's own data check on the result, so what ``main.py
train --model mask-rcnn --data-dir DIR`` will skip is known before it starts. Formats: :mod:`dataset.formats`.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
from typing import List, Optional

from dataset.formats import Converted, labelme, masks, voc, yolo

READERS = {"labelme": labelme.read, "voc": voc.read, "masks": masks.read, "yolo-seg": yolo.read}
SHOWN = 5


def hold_out(converted: Converted, fraction: float, seed: int) -> Converted:
    """Moves a seeded ``fraction`` of the ``train`` images (at least one) into ``val`` (by image; a split the
    source already has is kept)."""
    if not fraction or "val" in converted.splits:
        return converted
    samples = list(converted.splits["train"])
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    held = set(order[:max(1, round(fraction * len(samples)))])
    converted.splits = {"train": [s for i, s in enumerate(samples) if i not in held],
                        "val": [s for i, s in enumerate(samples) if i in held]}
    return converted


def _report(converted: Converted, out: str) -> None:
    """The mapping and the skipped entries, printed (the full list in a TSV file)."""
    print("categories: " + ", ".join(f"{i} {name}" for i, name in enumerate(converted.class_names, 1)))
    for split, samples in converted.splits.items():
        objects = sum(len(s.instances) for s in samples)
        print(f"{split}: {len(samples)} images, {objects} objects")
    if converted.skipped:
        path = os.path.join(out, "conversion_skipped.tsv")
        with open(path, "w") as handle:
            handle.writelines(f"{where}\t{why}\n" for where, why in converted.skipped)
        shown = "; ".join(f"{where}: {why}" for where, why in converted.skipped[:SHOWN])
        print(f"skipped {len(converted.skipped)} source entries: {shown}{'; ...' if len(converted.skipped) > SHOWN else ''}"
              f" (all in {path})")


def check(written: dict, out: str) -> int:
    """The training's data check on each converted split; returns the number of unusable entries."""
    from mrcnn_tf2.data.coco import CocoDataset

    problems = 0
    for split, annotation_file in written.items():
        dataset = CocoDataset(annotation_file, os.path.join(out, split))
        problems += len(dataset.report)
        for where, why in dataset.report.problems[:SHOWN]:
            print(f"  unusable in {split}: {where}: {why}")
    return problems


def convert(source_format: str, src: str, out: str, val_fraction: float = 0.0, seed: int = 0) -> dict:
    """Reads ``src`` in ``source_format``, writes COCO under ``out``; returns ``{split: annotation file}``."""
    from dataset.formats.coco_writer import write_coco

    if not os.path.isdir(src):
        raise FileNotFoundError(f"no such folder: {src}")
    converted = hold_out(READERS[source_format](src), val_fraction, seed)
    if not any(converted.splits.values()):
        raise ValueError(f"no {source_format} annotations found in {src}")
    os.makedirs(out, exist_ok=True)
    written = write_coco(converted, out)
    _report(converted, out)
    return written


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dataset.convert", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--from", dest="source_format", required=True, choices=sorted(READERS),
                        help="the source's format")
    parser.add_argument("src", help="the source folder")
    parser.add_argument("--out", required=True, help="the COCO data set to write (created)")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="hold out this share of the images as the val split (when the source has none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --val-fraction's draw")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse(argv)
    try:
        written = convert(args.source_format, args.src, args.out, args.val_fraction, args.seed)
    except (OSError, ValueError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    unusable = check(written, args.out)
    print(f"COCO data set: {args.out} ({unusable} unusable entries after the check)")
    val = "" if "val" in written else "  (no val split: add --val-fraction 0.1, or train with --no-eval)"
    print(f"next: python main.py train --model mask-rcnn-finetune --pretrained --data-dir {args.out}{val}"
          "  (torchvision's COCO weights fine-tuned; --model mask-rcnn: NVIDIA's recipe from ImageNet weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
