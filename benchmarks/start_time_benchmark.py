"""First and second start of a run at ImageNet / COCO size: time and peak memory of the data checks.

    python benchmarks/start_time_benchmark.py --root /tmp/fullsize          # generate (once), then measure
    python benchmarks/start_time_benchmark.py --root /tmp/fullsize --only coco --commit HEAD~1

Generates, under ``--root`` (never committed; reused when present):

* ``imagefolder/{train,val}/class_XXXX/*.jpg``: 300,000 training files in 1000 classes (+ 1000 validation
  files), hard links to 8 distinct 64x64 JPEGs (the page cache flatters the figures, as in the issue);
* ``coco/annotations/instances_train2017.json``: COCO train2017's counts, 118,287 images and 862,721 polygon
  annotations (12-40 points each, ~450 MB of JSON), and ``coco/train2017/`` with one hard-linked 64x48 JPEG per
  image (4 distinct ones), the listed size.

Each measurement runs in a fresh process under ``/usr/bin/time -v`` (wall seconds, peak RSS) and does exactly
what a run does before its first step with that data: EfficientNet's ImageFolder check of both splits
(``efficientnet_tf2.task``) and Mask R-CNN's loading and checking of the COCO file
(``mrcnn_tf2.data.sources.resolve_sources``), with a workspace: the first start in an empty one, the second in
the same one (a restart). ``--commit`` measures another commit the same way (a ``git worktree``), for
before/after figures in one run. Results: one JSON line each on stdout and in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_FILES, CLASSES = 300_000, 1000
COCO_IMAGES, COCO_ANNOTATIONS = 118_287, 862_721

# What a run does with its data before the first step, per data set (run inside the measured process).
PROBES = {
    "imagefolder": """
import sys, time
from efficientnet_tf2.task import ClassificationConfig, ImageClassificationTask
t = time.time()
task = ImageClassificationTask(ClassificationConfig(data_dir=sys.argv[1], report_dir=sys.argv[2]))
print("probe_seconds", time.time() - t, "images", task._num_train)
""",
    "coco": """
import sys, time
from mrcnn_tf2.data import sources
t = time.time()
s = sources.resolve_sources(None, train_annotations=sys.argv[1], train_images=sys.argv[2], need_val=False,
                            report_dir=sys.argv[3])
print("probe_seconds", time.time() - t, "images", s.num_train)
""",
}


def _jpeg(path: str, size, seed: int) -> None:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=80)


def make_imagefolder(root: str) -> str:
    """``root/imagefolder`` with 300k training and 1000 validation files (hard links)."""
    folder = os.path.join(root, "imagefolder")
    if os.path.isfile(os.path.join(folder, "DONE")):
        return folder
    sources = [os.path.join(root, f"source_{i}.jpg") for i in range(8)]
    os.makedirs(root, exist_ok=True)
    for i, path in enumerate(sources):
        _jpeg(path, (64, 64), i)
    per_class = TRAIN_FILES // CLASSES
    for split, count in (("train", per_class), ("val", 1)):
        for c in range(CLASSES):
            directory = os.path.join(folder, split, f"class_{c:04d}")
            os.makedirs(directory, exist_ok=True)
            for i in range(count):
                os.link(sources[(c + i) % len(sources)], os.path.join(directory, f"{c:04d}_{i:06d}.jpg"))
    open(os.path.join(folder, "DONE"), "w").close()
    return folder


def _polygon(rng, width: int, height: int):
    import numpy as np

    points = int(rng.integers(12, 41))
    centre = rng.uniform([8, 8], [width - 8, height - 8])
    angles = np.sort(rng.uniform(0, 2 * np.pi, points))
    radius = rng.uniform(2, 8, points)
    xy = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], 1)
    return [round(float(v), 2) for v in xy.reshape(-1)]


def make_coco(root: str) -> tuple:
    """``root/coco``: train2017-sized annotations (written item by item) and one hard link per image."""
    folder = os.path.join(root, "coco")
    annotations = os.path.join(folder, "annotations", "instances_train2017.json")
    images = os.path.join(folder, "train2017")
    if os.path.isfile(os.path.join(folder, "DONE")):
        return annotations, images
    import numpy as np

    os.makedirs(os.path.dirname(annotations), exist_ok=True)
    os.makedirs(images, exist_ok=True)
    sources = [os.path.join(root, f"coco_source_{i}.jpg") for i in range(4)]  # ext4: <= 65,000 links a file
    for i, path in enumerate(sources):
        _jpeg(path, (64, 48), i)
    rng = np.random.default_rng(0)
    per_image = np.bincount(rng.integers(0, COCO_IMAGES, COCO_ANNOTATIONS), minlength=COCO_IMAGES)
    with open(annotations, "w") as out:
        out.write('{"info": {"description": "generated, COCO train2017 counts"}, "licenses": [], "categories": ')
        json.dump([{"id": i, "name": f"class_{i}", "supercategory": "thing"} for i in range(1, 81)], out)
        out.write(', "images": [')
        for i in range(COCO_IMAGES):
            name = f"{i + 1:012d}.jpg"
            os.link(sources[i % len(sources)], os.path.join(images, name))
            out.write(("," if i else "") + json.dumps({"id": i + 1, "file_name": name, "height": 48, "width": 64,
                                                      "license": 1}))
        out.write('], "annotations": [')
        ann_id = 0
        for i in range(COCO_IMAGES):
            for _ in range(per_image[i]):
                polygon = _polygon(rng, 64, 48)
                xs, ys = polygon[0::2], polygon[1::2]
                box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                ann_id += 1
                out.write(("," if ann_id > 1 else "") + json.dumps({
                    "id": ann_id, "image_id": i + 1, "category_id": int(rng.integers(1, 81)), "iscrowd": 0,
                    "area": round(box[2] * box[3] * 0.7, 2), "bbox": [round(v, 2) for v in box],
                    "segmentation": [polygon]}))
        out.write("]}")
    open(os.path.join(folder, "DONE"), "w").close()
    return annotations, images


def measure(python: str, cwd: str, probe: str, args, label: str) -> dict:
    """One fresh process running ``probe`` under ``/usr/bin/time -v``: wall seconds, peak RSS."""
    command = ["/usr/bin/time", "-v", python, "-c", PROBES[probe], *args]
    start = time.time()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": cwd, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.time() - start
    if done.returncode:
        raise RuntimeError(f"{label} failed:\n{done.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    probe_s = float(re.search(r"probe_seconds ([\d.]+)", done.stdout).group(1))
    return {"case": label, "process_seconds": round(wall, 2), "check_seconds": round(probe_s, 2),
            "peak_rss_gb": round(rss / 2 ** 20, 3)}


def checkout(commit: str) -> str:
    """A ``git worktree`` of ``commit`` (removed by the caller; the data checks need no custom ops)."""
    path = tempfile.mkdtemp(prefix="start_time_")
    subprocess.run(["git", "worktree", "add", "--detach", path, commit], cwd=ROOT, check=True, capture_output=True)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="where the full-size data is generated (and reused)")
    parser.add_argument("--only", choices=sorted(PROBES), nargs="*", default=sorted(PROBES))
    parser.add_argument("--commit", default=None, help="also measure this commit (a git worktree), same run")
    parser.add_argument("--out", default="", help="append the JSON lines here")
    args = parser.parse_args(argv)
    data = {}
    if "imagefolder" in args.only:
        folder = make_imagefolder(args.root)
        data["imagefolder"] = lambda ws: [folder, ws]
    if "coco" in args.only:
        annotations, images = make_coco(args.root)
        data["coco"] = lambda ws: [annotations, images, ws]
    trees = [("this checkout", ROOT)]
    if args.commit:
        trees.insert(0, (args.commit, checkout(args.commit)))
    rows = []
    try:
        for probe, make_args in data.items():
            for name, tree in trees:
                workspace = tempfile.mkdtemp(prefix="ws_")
                for start in ("first start", "second start"):
                    row = measure(sys.executable, tree, probe, make_args(workspace), f"{probe}, {name}, {start}")
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                shutil.rmtree(workspace)
    finally:
        for name, tree in trees:
            if tree != ROOT:
                subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, capture_output=True)
    if args.out:
        with open(args.out, "a") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
