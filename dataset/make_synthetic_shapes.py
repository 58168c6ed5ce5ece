"""Writes a small deterministic COCO-format instance-segmentation dataset of shapes.

Each image holds 1-4 circles, squares and triangles (15-50% of the short side) in
random colours on a noisy background; later shapes may hide a little of earlier
ones. Annotations follow COCO: ``bbox`` ``[x, y, w, h]``, ``area``, ``iscrowd`` and a
``segmentation`` that is a polygon for fully visible shapes and a compressed RLE
for half of the others and for every partly hidden shape (its visible part), so
both decoding paths are exercised. Output layout::

    <out>/train/000000000001.jpg ...
    <out>/val/000001000001.jpg ...
    <out>/annotations/instances_train.json
    <out>/annotations/instances_val.json

Edge cases for tests: ``--empty-fraction`` of the images have no object, and
``--with-crowd`` / ``--with-zero-area`` add one crowd instance (RLE, ``iscrowd: 1``)
and one zero-width box to the first image of each split. The same arguments give
byte-identical files (numpy + PIL + pycocotools only).

    python -m dataset.make_synthetic_shapes --out /tmp/coco_shapes --num-train 200
"""
import argparse
import json
import math
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

# COCO category ids are deliberately non-contiguous, as in COCO itself.
CATEGORIES = ({"id": 1, "name": "circle", "supercategory": "shape"},
              {"id": 3, "name": "square", "supercategory": "shape"},
              {"id": 7, "name": "triangle", "supercategory": "shape"})
SPLITS = (("train", 0), ("val", 1))
_VAL_ID_OFFSET = 1_000_000
_CIRCLE_POINTS = 32
_SIZE_RANGE = (0.15, 0.5)
_MIN_VISIBLE = 0.6      # an earlier shape keeps at least this fraction visible
_PLACEMENT_TRIES = 20
_JPEG_QUALITY = 90


def _parse_size(image_size):
    """int S or (H, W) -> (H, W) ints."""
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = (int(v) for v in image_size)
    if min(height, width) < 16:
        raise ValueError(f"Received: image_size={image_size}; expected sides >= 16.")
    return height, width


def _shape_polygon(name, cx, cy, radius, angle):
    """Flat [x0, y0, x1, y1, ...] polygon of a shape, rounded to 0.01 px."""
    vertices = {"circle": _CIRCLE_POINTS, "square": 4, "triangle": 3}[name]
    if name == "square":
        angle = math.pi / 4 + (angle % (math.pi / 6)) - math.pi / 12   # small tilt only
    points = []
    for k in range(vertices):
        a = angle + 2 * math.pi * k / vertices
        points += [round(cx + radius * math.cos(a), 2), round(cy + radius * math.sin(a), 2)]
    return points


def rasterize(polygons, height, width):
    """COCO polygons (list of flat xy lists) -> [H, W] uint8 {0, 1}, as pycocotools does."""
    rles = mask_utils.frPyObjects(polygons, height, width)
    return mask_utils.decode(mask_utils.merge(rles))


def _random_shape(rng, height, width):
    """One shape: (category index, polygon) fully inside the image."""
    category = int(rng.integers(len(CATEGORIES)))
    radius = rng.uniform(*_SIZE_RANGE) * min(height, width) / 2
    cx = rng.uniform(radius, width - radius)
    cy = rng.uniform(radius, height - radius)
    name = CATEGORIES[category]["name"]
    return category, [_shape_polygon(name, cx, cy, radius, rng.uniform(0, 2 * math.pi))]


def _crowd_shape(rng, height, width):
    """A cluster of 3-6 small discs, one 'circle' crowd region: (0, polygons)."""
    side = min(height, width)
    cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
    polygons = []
    for _ in range(int(rng.integers(3, 7))):
        radius = rng.uniform(0.04, 0.07) * side
        x = float(np.clip(cx + rng.uniform(-0.15, 0.15) * side, radius, width - radius))
        y = float(np.clip(cy + rng.uniform(-0.15, 0.15) * side, radius, height - radius))
        polygons.append(_shape_polygon("circle", x, y, radius, 0.0))
    return 0, polygons


def _keeps_visible(new_mask, objects, min_visible=_MIN_VISIBLE):
    """True if every earlier object keeps >= `min_visible` of its area under `new_mask`."""
    return all((obj["visible"] & (1 - new_mask)).sum() >= min_visible * obj["mask"].sum()
               for obj in objects)


def _layout(rng, height, width, num_shapes, crowd, occlusion=True):
    """Places the crowd region (first, so it always fits) and up to `num_shapes` shapes.

    Returns:
      List of dicts: category (index into CATEGORIES), polygons, iscrowd, mask and
      visible ([H, W] uint8, the part not hidden by later objects), in drawing order.
    """
    makers = ([_crowd_shape] if crowd else []) + [_random_shape] * num_shapes
    objects = []
    for maker in makers:
        for _ in range(_PLACEMENT_TRIES):
            category, polygons = maker(rng, height, width)
            mask = rasterize(polygons, height, width)
            if mask.any() and _keeps_visible(mask, objects, _MIN_VISIBLE if occlusion else 1.0):
                break
        else:
            continue
        for obj in objects:
            obj["visible"] = obj["visible"] & (1 - mask)
        objects.append({"category": category, "polygons": polygons, "mask": mask,
                        "visible": mask.copy(), "iscrowd": maker is _crowd_shape})
    return objects


def _background(rng, height, width):
    """Background with a colour gradient, and a noise field.

    Returns:
      ([H, W, 3] float64 smooth background, [3] base colour, [H, W, 3] float64 noise).
    """
    base = rng.uniform(60, 200, size=3)
    ramp = np.linspace(-1.0, 1.0, width)[None, :, None] * rng.uniform(-25, 25, size=3)
    noise = rng.normal(0.0, 10.0, size=(height, width, 3))
    return np.broadcast_to(base + ramp, (height, width, 3)).copy(), base, noise


def _contrasting_colour(rng, base):
    """Random RGB colour at least 150 away (L1) from the background `base`."""
    colour = rng.integers(0, 256, size=3)
    for _ in range(50):
        if np.abs(colour - base).sum() >= 150:
            break
        colour = rng.integers(0, 256, size=3)
    return colour


def render(rng, height, width, num_shapes, crowd=False, occlusion=True):
    """One image: ([H, W, 3] uint8 numpy array, objects as returned by `_layout`; `occlusion` False: no shape
    overlaps another)."""
    image, base, noise = _background(rng, height, width)
    objects = _layout(rng, height, width, num_shapes, crowd, occlusion)
    for obj in objects:
        image[obj["mask"].astype(bool)] = _contrasting_colour(rng, base)
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8), objects


def _uncompressed_rle(mask):
    """[H, W] {0, 1} -> COCO uncompressed RLE (column-major run lengths, zeros first)."""
    flat = mask.flatten(order="F").astype(np.int8)
    starts = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], starts, [flat.size]])).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"counts": [int(c) for c in counts], "size": [int(s) for s in mask.shape]}


def _rle_fields(mask):
    """[H, W] {0, 1} -> (bbox [x, y, w, h] of the mask, area in pixels)."""
    rle = mask_utils.encode(np.asfortranarray(mask))
    return [round(float(v), 2) for v in mask_utils.toBbox(rle)], float(mask_utils.area(rle))


def _polygon_bbox(polygons):
    """Extent of flat xy polygons -> [x, y, w, h]."""
    xs = [x for polygon in polygons for x in polygon[0::2]]
    ys = [y for polygon in polygons for y in polygon[1::2]]
    return [min(xs), min(ys), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]


def _segmentation(obj, as_rle):
    """(segmentation, bbox, area) of an object's visible part.

    Crowds get an uncompressed RLE, partly hidden objects and those with `as_rle` a
    compressed RLE, the rest their polygon(s).
    """
    visible = obj["visible"]
    if obj["iscrowd"]:
        return (_uncompressed_rle(visible),) + tuple(_rle_fields(visible))
    if as_rle or not np.array_equal(visible, obj["mask"]):
        rle = mask_utils.encode(np.asfortranarray(visible))
        counts = {"counts": rle["counts"].decode("ascii"), "size": [int(s) for s in rle["size"]]}
        return (counts,) + tuple(_rle_fields(visible))
    return obj["polygons"], _polygon_bbox(obj["polygons"]), float(visible.sum())


def _annotation(obj, image_id, as_rle):
    """COCO annotation dict (without "id") of one rendered object."""
    segmentation, bbox, area = _segmentation(obj, as_rle)
    return {"image_id": image_id, "category_id": CATEGORIES[obj["category"]]["id"],
            "segmentation": segmentation, "area": area, "bbox": bbox,
            "iscrowd": int(obj["iscrowd"])}


def _zero_area_annotation(rng, image_id, height, width):
    """A zero-width box (and degenerate polygon) not drawn in the image."""
    x, y = round(rng.uniform(0, width / 2), 2), round(rng.uniform(0, height / 2), 2)
    h = round(0.2 * height, 2)
    return {"image_id": image_id, "category_id": CATEGORIES[1]["id"],
            "segmentation": [[x, y, x, y + h, x, y + h]], "area": 0.0,
            "bbox": [x, y, 0.0, h], "iscrowd": 0}


def _is_empty(index, empty_fraction):
    """Spreads floor(n * empty_fraction) object-free images evenly; image 0 never (f < 1)."""
    return math.floor((index + 1) * empty_fraction) > math.floor(index * empty_fraction)


def _write_image(out_dir, split, split_id, index, size, seed, options):
    """Renders and saves one image; returns (COCO image dict, annotations without ids)."""
    height, width = size
    rng = np.random.default_rng([seed, split_id, index])
    image_id = split_id * _VAL_ID_OFFSET + index + 1
    num_shapes = int(rng.integers(1, 5))
    if _is_empty(index, options["empty_fraction"]):
        num_shapes = 0
    array, objects = render(rng, height, width, num_shapes, options["crowd"] and index == 0, options["occlusion"])
    file_name = f"{image_id:012d}.jpg"
    Image.fromarray(array).save(os.path.join(out_dir, split, file_name), format="JPEG",
                                quality=_JPEG_QUALITY)
    annotations = [_annotation(obj, image_id, as_rle=options["occlusion"] and (index + k) % 2 == 1)
                   for k, obj in enumerate(objects)]
    if options["zero_area"] and index == 0:
        annotations.append(_zero_area_annotation(rng, image_id, height, width))
    image = {"id": image_id, "file_name": file_name, "height": height, "width": width}
    return image, annotations


def _write_split(out_dir, split, split_id, num_images, size, seed, options):
    """Writes `<out_dir>/<split>/*.jpg` and its annotation file; returns the JSON path."""
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        image, anns = _write_image(out_dir, split, split_id, index, size, seed, options)
        images.append(image)
        annotations.extend(anns)
    for ann_id, ann in enumerate(annotations, start=1):
        ann["id"] = ann_id
    coco = {"info": {"description": "synthetic shapes", "version": "1.0"}, "licenses": [],
            "images": images, "annotations": annotations, "categories": list(CATEGORIES)}
    path = os.path.join(out_dir, "annotations", f"instances_{split}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(coco, f)
    return path


def make_dataset(out_dir, num_train=200, num_val=50, image_size=128, seed=0,
                 empty_fraction=0.05, crowd=False, zero_area=False, occlusion=True):
    """Writes the train and val splits; returns a dict of paths.

    Args:
      out_dir: output root (created if needed).
      num_train / num_val: images per split.
      image_size: int S (square images) or (H, W), sides >= 16.
      seed: integer seed; the same arguments give byte-identical files.
      empty_fraction: fraction in [0, 1] of images without objects (image 0 has some
        unless it is 1).
      crowd: add one crowd instance (uncompressed RLE) to the first image of each split.
      zero_area: add one zero-width box to the first image of each split.
      occlusion: False: no shape overlaps another and every segmentation is a polygon (what polygon
        formats such as LabelMe and YOLO can hold; :mod:`dataset.formats` writes them).

    Returns:
      {"root", "train_images", "val_images", "train_annotations", "val_annotations"}.
    """
    if not 0.0 <= empty_fraction <= 1.0:
        raise ValueError(f"Received: empty_fraction={empty_fraction}; expected 0 <= f <= 1.")
    size = _parse_size(image_size)
    options = {"empty_fraction": empty_fraction, "crowd": crowd, "zero_area": zero_area, "occlusion": occlusion}
    counts = {"train": num_train, "val": num_val}
    paths = {"root": out_dir}
    for split, split_id in SPLITS:
        paths[f"{split}_annotations"] = _write_split(out_dir, split, split_id, counts[split],
                                                     size, seed, options)
        paths[f"{split}_images"] = os.path.join(out_dir, split)
    return paths


def _image_size_arg(text):
    """'128' -> 128, '96x128' -> (96, 128) (height x width)."""
    parts = text.lower().split("x")
    if len(parts) == 1:
        return int(parts[0])
    return int(parts[0]), int(parts[1])


def _parse_args(argv=None):
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--num-train", type=int, default=200)
    parser.add_argument("--num-val", type=int, default=50)
    parser.add_argument("--image-size", type=_image_size_arg, default=128,
                        help="side S, or HxW such as 96x128")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--empty-fraction", type=float, default=0.05,
                        help="fraction of images without objects")
    parser.add_argument("--with-crowd", action="store_true",
                        help="add one crowd instance to the first image of each split")
    parser.add_argument("--with-zero-area", action="store_true",
                        help="add one zero-area box to the first image of each split")
    parser.add_argument("--no-occlusion", action="store_true",
                        help="no shape overlaps another; every segmentation a polygon")
    parser.add_argument("--format", choices=FORMATS, default="coco",
                        help="also write the set as a labelling tool would (<out>/<format>; LabelMe and YOLO imply "
                             "--no-occlusion): the source of `python -m dataset.convert`")
    return parser.parse_args(argv)


FORMATS = ("coco", "labelme", "voc", "masks", "yolo-seg")


def write_format(paths, fmt, out):
    """The generated COCO set written in ``fmt`` under ``out`` (VOC and YOLO keep train and val, LabelMe and
    mask folders hold both splits' images in one set, as a user's single labelled folder would)."""
    from dataset.formats import labelme, masks, voc, yolo

    for split, _ in SPLITS:
        annotations, images = paths[f"{split}_annotations"], paths[f"{split}_images"]
        if fmt == "voc":
            voc.write(annotations, images, out, split=split)
        elif fmt == "yolo-seg":
            yolo.write(annotations, images, out, split=split)
        elif fmt == "labelme":
            labelme.write(annotations, images, out)
        else:
            masks.write(annotations, images, out)
    return out


def _summary(paths):
    """One line per split: images, instances (crowd), empty images, where."""
    lines = []
    for split, _ in SPLITS:
        with open(paths[f"{split}_annotations"]) as f:
            coco = json.load(f)
        used = {a["image_id"] for a in coco["annotations"]}
        crowd = sum(a["iscrowd"] for a in coco["annotations"])
        lines.append(f"{split}: {len(coco['images'])} images "
                     f"({len(coco['images']) - len(used)} without objects), "
                     f"{len(coco['annotations'])} instances ({crowd} crowd) -> "
                     f"{os.path.abspath(paths[f'{split}_images'])}, "
                     f"{os.path.abspath(paths[f'{split}_annotations'])}")
    return "\n".join(lines)


def main(argv=None):
    """CLI entry point."""
    args = _parse_args(argv)
    occlusion = not args.no_occlusion and args.format not in ("labelme", "yolo-seg")
    paths = make_dataset(args.out, args.num_train, args.num_val, args.image_size, args.seed,
                         args.empty_fraction, args.with_crowd, args.with_zero_area, occlusion)
    print(f"Wrote a synthetic COCO dataset ({len(CATEGORIES)} categories) to "
          f"{os.path.abspath(args.out)}\n{_summary(paths)}")
    if args.format != "coco":
        out = write_format(paths, args.format, os.path.join(args.out, args.format))
        print(f"... and as {args.format}: {os.path.abspath(out)} "
              f"(python -m dataset.convert --from {args.format} {out} --out DIR)")


if __name__ == "__main__":
    main()
