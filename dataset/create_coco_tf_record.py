"""Converts a COCO instances file and its images to sharded TFRecords.

One ``tf.train.Example`` per image with the TF Model Garden keys: image/encoded (the
file's bytes), image/format, image/height, image/width, image/source_id (the COCO
image id as a string), image/filename, image/object/bbox/{ymin,xmin,ymax,xmax} in
[0, 1], image/object/class/label (COCO category id), image/object/class/text,
image/object/is_crowd, image/object/area and image/object/mask (one PNG per instance,
full image size). Instances are those of ``mrcnn_tf2.data.coco.CocoDataset``: boxes
clipped to the image, zero-area boxes dropped. Image ``i`` (in image-id order) goes to
shard ``i % num_shards``::

    python -m dataset.create_coco_tf_record --image_dir /data/train2017 \\
        --object_annotations_file /data/annotations/instances_train2017.json \\
        --output_file_prefix /data/tfrecord/train --num_shards 256
"""
import argparse
import io
import logging
import os
import sys

import numpy as np
import tensorflow as tf
from PIL import Image

from common.io import data_check
from mrcnn_tf2.data.coco import CocoDataset

_BAR_WIDTH = 30


def _bytes(values):
    """Iterable of bytes -> bytes_list feature."""
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _floats(values):
    """Iterable of floats -> float_list feature."""
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _ints(values):
    """Iterable of ints -> int64_list feature."""
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def encode_png_mask(mask):
    """``[H, W] uint8`` {0, 1} -> PNG bytes (mode L, values 0/1)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_format(data, path):
    """Format name of encoded image bytes ("jpeg", "png", ...); ValueError naming `path`."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format.lower()
    except Exception as error:
        raise ValueError(f"{path} is not a readable image: {error}") from error


def _object_features(record, masks, height, width, coco):
    """Per-instance features of one record (masks ``[N, H, W] uint8``)."""
    boxes = record["boxes"].astype(np.float64) / [height, width, height, width]
    classes = record["classes"]
    return {
        "image/object/bbox/ymin": _floats(boxes[:, 0]),
        "image/object/bbox/xmin": _floats(boxes[:, 1]),
        "image/object/bbox/ymax": _floats(boxes[:, 2]),
        "image/object/bbox/xmax": _floats(boxes[:, 3]),
        "image/object/class/label": _ints(coco.category_ids[c] for c in classes),
        "image/object/class/text": _bytes(coco.class_names[c].encode() for c in classes),
        "image/object/is_crowd": _ints(int(c) for c in record["is_crowd"]),
        "image/object/area": _floats(record["areas"]),
        "image/object/mask": _bytes(encode_png_mask(m) for m in masks),
    }


def build_example(coco: CocoDataset, index: int) -> tf.train.Example:
    """``tf.train.Example`` of image ``index`` of ``coco``.

    Raises:
      FileNotFoundError: the image file is missing (names the path).
    """
    record = coco.record(index, with_masks=True)
    with open(record["path"], "rb") as f:
        data = f.read()
    height, width = record["height"], record["width"]
    feature = {
        "image/encoded": _bytes([data]),
        "image/format": _bytes([_image_format(data, record["path"]).encode()]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/source_id": _bytes([str(record["image_id"]).encode()]),
        "image/filename": _bytes([os.path.basename(record["path"]).encode()]),
        **_object_features(record, record["masks"], height, width, coco),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_paths(output_file_prefix: str, num_shards: int) -> list:
    """``PREFIX-00000-of-0000N.tfrecord`` names of the ``num_shards`` shards."""
    return [f"{output_file_prefix}-{i:05d}-of-{num_shards:05d}.tfrecord"
            for i in range(num_shards)]


def _progress(done, total, stream):
    """Rewrites a one-line textual progress bar on ``stream`` (about every 1%)."""
    if done != total and done % max(total // 100, 1):
        return
    filled = _BAR_WIDTH * done // max(total, 1)
    stream.write(f"\r[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done}/{total} images")
    if done == total:
        stream.write("\n")
    stream.flush()


def create_tf_record(image_dir: str, annotation_file: str, output_file_prefix: str,
                     num_shards: int, progress_stream=sys.stderr, strict: bool = False) -> list:
    """Writes all images of ``annotation_file`` to sharded TFRecords; returns the paths.

    Args:
      image_dir: folder of the images (``file_name`` in the JSON is relative to it).
      annotation_file: COCO instances JSON.
      output_file_prefix: path prefix of the shards (its folder is created).
      num_shards: number of output files (>= 1).
      progress_stream: where the progress bar goes (None: no bar).
      strict: an unusable image or annotation (``CocoDataset.report``) is an error; by default each
        is named in one warning and left out of the records.
    """
    if num_shards < 1:
        raise ValueError(f"Received: num_shards={num_shards}; expected >= 1.")
    coco = CocoDataset(annotation_file, image_dir)
    data_check.settle(coco.report, strict, None, what="images and annotations", action="left out of the TFRecords")
    paths = shard_paths(output_file_prefix, num_shards)
    os.makedirs(os.path.dirname(os.path.abspath(output_file_prefix)), exist_ok=True)
    writers = [tf.io.TFRecordWriter(path) for path in paths]
    try:
        for index in range(len(coco)):
            writers[index % num_shards].write(build_example(coco, index).SerializeToString())
            if progress_stream is not None:
                _progress(index + 1, len(coco), progress_stream)
    finally:
        for writer in writers:
            writer.close()
    return paths


def _parse_args(argv=None):
    """Command-line flags (Model Garden names)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image_dir", required=True, help="folder of the images")
    parser.add_argument("--object_annotations_file", required=True,
                        help="COCO instances JSON")
    parser.add_argument("--output_file_prefix", required=True,
                        help="shards are PREFIX-00000-of-0000N.tfrecord")
    parser.add_argument("--num_shards", type=int, default=32)
    parser.add_argument("--strict-data", "--strict_data", dest="strict_data", action="store_true",
                        help="an unusable image or annotation is an error (default: named, left out)")
    return parser.parse_args(argv)


def main(argv=None):
    """CLI entry point."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = create_tf_record(args.image_dir, args.object_annotations_file,
                             args.output_file_prefix, args.num_shards, strict=args.strict_data)
    print(f"Wrote {len(paths)} shards: {paths[0]} ... {paths[-1]}")


if __name__ == "__main__":
    main()
