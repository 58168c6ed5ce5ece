"""tf.data input of Mask R-CNN from a ``CocoDataset`` or COCO TFRecords.

Shape glossary
  B        images per batch (per replica)
  Hp, Wp   padded image size (``InputConfig.batch_padded_size()``)
  M        ``max_instances`` GT rows per image;  S  ``gt_mask_size``

Both sources first give the same *example* dict for one image: "image" ``[H, W, 3]
uint8``, "source_id" ``[] int64`` (COCO image id), "boxes" ``[N, 4] float32``
(ymin, xmin, ymax, xmax) pixels, "classes" ``[N] int32`` contiguous 1..C, "is_crowd"
``[N] bool`` and "masks" ``[N, H, W] uint8``; ``prepare_example`` then turns it into
the batched ``(features, labels)`` documented in :func:`build_dataset`.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import tensorflow as tf

from mrcnn_tf2.data import preprocessing as prep
from common.training.task import local_batch_size
from mrcnn_tf2.data.coco import CocoDataset
from mrcnn_tf2.data.inputs import InputConfig
from mrcnn_tf2.ops import box_ops

AUTOTUNE = tf.data.AUTOTUNE
_RECORD_SHUFFLE_BUFFER = 1024
_MAX_INTERLEAVE = 16

# What build_dataset reads from TFRecords written by dataset/create_coco_tf_record.py
# (TF Model Garden keys); the writer also stores format, filename, class/text, area.
TFRECORD_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string),
    "image/source_id": tf.io.FixedLenFeature((), tf.string),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
    "image/object/mask": tf.io.VarLenFeature(tf.string),
}


def _epoch_seed(seed: int, epoch: int) -> int:
    """One int64 seed per (seed, epoch)."""
    return int(seed) * 1_000_003 + int(epoch)


def _shard(ds, input_context):
    """Keeps this input pipeline's share of ``ds`` (all of it without a context)."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return ds
    return ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


# ------------------------------------------------------------------ CocoDataset source
def _coco_numpy_loader(coco: CocoDataset):
    """index -> (path, image id, height, width, boxes, classes, is_crowd, masks) numpy."""
    def load(index):
        record = coco.record(int(index), with_masks=True)
        return (record["path"].encode(), np.int64(record["image_id"]),
                np.int32(record["height"]), np.int32(record["width"]), record["boxes"],
                record["classes"], record["is_crowd"], record["masks"])
    return load


def _coco_example(coco: CocoDataset):
    """Map function: ``[] int64`` index -> example dict (see the module docstring)."""
    load = _coco_numpy_loader(coco)
    dtypes = [tf.string, tf.int64, tf.int32, tf.int32, tf.float32, tf.int32, tf.bool, tf.uint8]

    def example(index):
        path, image_id, height, width, boxes, classes, crowd, masks = tf.numpy_function(
            load, [index], dtypes, stateful=False)
        image = prep.decode_image(tf.io.read_file(path))
        same_size = tf.reduce_all(tf.shape(image)[:2] == tf.stack([height, width]))
        check = tf.debugging.Assert(same_size, [
            "Image size differs from height/width in the annotation file:", path])
        with tf.control_dependencies([check]):
            image = tf.identity(image)
        return {"image": image, "source_id": tf.ensure_shape(image_id, []),
                "boxes": tf.ensure_shape(boxes, [None, 4]),
                "classes": tf.ensure_shape(classes, [None]),
                "is_crowd": tf.ensure_shape(crowd, [None]),
                "masks": tf.ensure_shape(masks, [None, None, None])}
    return example


def coco_examples(coco: CocoDataset, training: bool, seed: int, epoch: int,
                  input_context=None) -> tf.data.Dataset:
    """Example dicts of a ``CocoDataset`` (shuffled per (seed, epoch) when training)."""
    ds = _shard(tf.data.Dataset.range(len(coco)), input_context)
    if training:
        ds = ds.shuffle(len(coco), seed=_epoch_seed(seed, epoch), reshuffle_each_iteration=False)
    return ds.map(_coco_example(coco), num_parallel_calls=AUTOTUNE, deterministic=True)


# ------------------------------------------------------------------ TFRecord source
def _class_table(category_ids) -> tf.Tensor:
    """COCO category id -> contiguous class as a dense ``[max_id + 1] int32`` (-1: none)."""
    ids = [int(i) for i in category_ids]
    if not ids or ids[0] != 0 or len(set(ids)) != len(ids):
        raise ValueError(f"Received: category_ids={category_ids}; expected the contiguous "
                         "class -> COCO id list of a CocoDataset ([0, id1, id2, ...]).")
    table = np.full(max(ids) + 1, -1, np.int32)
    table[ids[1:]] = np.arange(1, len(ids), dtype=np.int32)
    return tf.constant(table)


def _contiguous_classes(labels: tf.Tensor, table: tf.Tensor) -> tf.Tensor:
    """``[N] int64`` COCO ids -> ``[N] int32`` classes; error for ids not in the table."""
    inside = (labels >= 0) & (labels < tf.cast(tf.size(table), tf.int64))
    classes = tf.gather(table, tf.where(inside, labels, 0))
    classes = tf.where(inside, classes, -1)
    tf.debugging.assert_non_negative(
        classes, message="TFRecord has a class label that is not in category_ids")
    return classes


def _decode_masks(pngs: tf.Tensor, height, width) -> tf.Tensor:
    """``[N]`` PNG strings -> ``[N, H, W] uint8``."""
    shape = tf.stack([tf.size(pngs), height, width])
    decode = lambda: tf.map_fn(lambda png: tf.io.decode_png(png, channels=1)[..., 0], pngs,
                               fn_output_signature=tf.TensorSpec([None, None], tf.uint8))
    masks = tf.cond(tf.size(pngs) > 0, decode, lambda: tf.zeros(shape, tf.uint8))
    return tf.reshape(masks, shape)


def _tfrecord_example(class_table: tf.Tensor):
    """Map function: serialized ``tf.train.Example`` -> example dict."""
    def example(serialized):
        parsed = tf.io.parse_single_example(serialized, TFRECORD_FEATURES)
        dense = {k: tf.sparse.to_dense(v) for k, v in parsed.items()
                 if isinstance(v, tf.sparse.SparseTensor)}
        image = prep.decode_image(parsed["image/encoded"])
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        boxes = tf.stack([dense[f"image/object/bbox/{k}"]
                          for k in ("ymin", "xmin", "ymax", "xmax")], axis=-1)
        classes = _contiguous_classes(dense["image/object/class/label"], class_table)
        crowd = dense["image/object/is_crowd"]
        crowd = tf.cond(tf.size(crowd) > 0, lambda: crowd > 0,
                        lambda: tf.zeros_like(classes, tf.bool))
        return {"image": image,
                "source_id": tf.strings.to_number(parsed["image/source_id"], tf.int64),
                "boxes": box_ops.denormalize_boxes(boxes, tf.stack([height, width])),
                "classes": classes, "is_crowd": crowd,
                "masks": _decode_masks(dense["image/object/mask"], height, width)}
    return example


def _tfrecord_files(pattern: str) -> list:
    """Sorted files matching ``pattern``; FileNotFoundError naming it if none."""
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"No TFRecord files match {pattern}")
    return files


def tfrecord_examples(pattern: str, category_ids, training: bool, seed: int, epoch: int,
                      input_context=None) -> tf.data.Dataset:
    """Example dicts of COCO TFRecords (files and records shuffled when training)."""
    if category_ids is None:
        raise ValueError(f"A TFRecord source ({pattern}) needs category_ids, the contiguous "
                         "class -> COCO category id list, e.g. "
                         "CocoDataset(annotation_file, image_dir).category_ids.")
    table, files = _class_table(category_ids), _tfrecord_files(pattern)
    pipelines = input_context.num_input_pipelines if input_context else 1
    ds = tf.data.Dataset.from_tensor_slices(files)
    if len(files) >= pipelines:
        ds = _shard(ds, input_context)
    if training:
        ds = ds.shuffle(len(files), seed=_epoch_seed(seed, epoch), reshuffle_each_iteration=False)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), _MAX_INTERLEAVE)
                       if training else 1, num_parallel_calls=AUTOTUNE, deterministic=True)
    if len(files) < pipelines:
        ds = _shard(ds, input_context)
    if training:
        ds = ds.shuffle(_RECORD_SHUFFLE_BUFFER, seed=_epoch_seed(seed, epoch) + 1,
                        reshuffle_each_iteration=False)
    return ds.map(_tfrecord_example(table), num_parallel_calls=AUTOTUNE, deterministic=True)


# ------------------------------------------------------------------ targets
def _select_instances(example: dict, max_instances: int, skip_crowd: bool):
    """Non-empty (and, with ``skip_crowd``, non-crowd) instances, at most M.

    Returns:
      (boxes ``[K, 4] float32``, classes ``[K] int32``, masks ``[K, H, W] uint8``), K <= M.
    """
    keep = box_ops.valid_box_mask(example["boxes"])
    if skip_crowd:
        keep = keep & tf.logical_not(example["is_crowd"])
    index = tf.where(keep)[:, 0][:max_instances]
    return tuple(tf.gather(example[k], index) for k in ("boxes", "classes", "masks"))


def _flip_coin(flip_seed: int, source_id: tf.Tensor) -> tf.Tensor:
    """``[] bool``, a fair coin that depends only on (flip_seed, source_id)."""
    seed = tf.stack([tf.constant(flip_seed, tf.int64), tf.cast(source_id, tf.int64)])
    return tf.random.stateless_uniform([], seed) < 0.5


def _flip_originals(coin, image, boxes, masks):
    """Mirrors the original image, its boxes and masks when ``coin``."""
    width = tf.shape(image)[1]
    return tf.cond(coin,
                   lambda: (tf.reverse(image, [1]), prep.flip_boxes(boxes, width),
                            prep.flip_masks(masks)),
                   lambda: (image, boxes, masks))


def _jittered(image, boxes, config: InputConfig, padded_size, seed):
    """Scale jitter / multi-scale (:mod:`mrcnn_tf2.data.augment`), or colour jitter alone at the fixed scale."""
    from mrcnn_tf2.data import augment

    if config.jitters_scale:
        return augment.scale_jitter(image, boxes, config, padded_size, seed)
    fixed = dataclasses.replace(config, scale_jitter=(1.0, 1.0))
    return augment.scale_jitter(image, boxes, fixed, padded_size, seed)


def prepare_example(example: dict, config: InputConfig, padded_size, training: bool,
                    flip_seed: int = 0):
    """Example dict -> (features, labels) of one image, static shapes (see build_dataset).

    The flip (training with ``config.flip``) is drawn from (flip_seed, source_id); it
    mirrors the original image and masks, and the scaled boxes about the scaled width. Training with scale or
    colour jitter goes through :func:`mrcnn_tf2.data.augment.scale_jitter` (instances cut out of the crop dropped).
    """
    boxes, classes, masks = _select_instances(example, config.max_instances,
                                              config.skip_crowd)
    image, mask_boxes, coin = example["image"], boxes, tf.constant(False)
    if training and config.flip:
        coin = _flip_coin(flip_seed, example["source_id"])
        image, mask_boxes, masks = _flip_originals(coin, image, boxes, masks)
    if training and (config.jitters_scale or config.color_jitter):
        seed = tf.stack([tf.constant(flip_seed, tf.int64) + 7, tf.cast(example["source_id"], tf.int64)])
        images, info, gt_boxes, mask_boxes, keep = _jittered(image, mask_boxes, config, padded_size, seed)
        index = tf.where(keep)[:, 0]
        gt_boxes, classes, masks, mask_boxes = (tf.gather(x, index) for x in (gt_boxes, classes, masks, mask_boxes))
    else:
        images, info = prep.preprocess_image(image, config, padded_size)
        gt_boxes = box_ops.clip_boxes(boxes * info[2], info[0:2])
        gt_boxes = tf.where(coin, prep.flip_boxes(gt_boxes, info[1]), gt_boxes)
    gt_masks = prep.crop_masks_to_boxes(masks, mask_boxes, config.gt_mask_size)
    m = config.max_instances
    features = {"images": tf.ensure_shape(images, list(padded_size) + [3]),
                "image_info": info, "source_ids": example["source_id"]}
    labels = {"gt_boxes": prep.pad_instances(gt_boxes, m, -1.0),
              "gt_classes": prep.pad_instances(classes, m, -1),
              "gt_masks": prep.pad_instances(gt_masks, m, 0.0)}
    return features, labels


# ------------------------------------------------------------------ public entry point
def _examples(source, training, seed, epoch, input_context, category_ids):
    """(example dataset, number of classes with background) of a source."""
    if isinstance(source, CocoDataset):
        if category_ids is not None and list(category_ids) != source.category_ids:
            raise ValueError(f"Received: category_ids={list(category_ids)}, but the "
                             f"CocoDataset has {source.category_ids}.")
        return (coco_examples(source, training, seed, epoch, input_context),
                source.num_classes)
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        pattern = str(source if not hasattr(source, "__fspath__") else source.__fspath__())
        return (tfrecord_examples(pattern, category_ids, training, seed, epoch, input_context),
                len(category_ids))
    raise TypeError(f"Received: source of type {type(source).__name__}; expected a "
                    "CocoDataset or a TFRecord file pattern.")


def build_dataset(source, config: InputConfig, *, training: bool, batch_size: int,
                  seed: int = 0, epoch: int = 0, input_context=None,
                  num_classes: int | None = None, category_ids=None) -> tf.data.Dataset:
    """Batched Mask R-CNN inputs.

    Args:
      source: a ``CocoDataset``, or a file pattern of TFRecords written by
        ``dataset/create_coco_tf_record.py`` (then ``category_ids`` is required).
      config: ``InputConfig``.
      training: shuffle per (seed, epoch), random flip, ``drop_remainder``; else the
        source order, no flip.
      batch_size: global batch (per replica when ``input_context`` is None).
      seed, epoch: the order and flips are a function of these.
      input_context: ``tf.distribute.InputContext`` for sharding and per-replica batch.
      num_classes: if given, must equal the classes of the source (background included).
      category_ids: contiguous class -> COCO category id (``CocoDataset.category_ids``).

    Returns:
      Dataset of (features, labels): features "images" ``[B, Hp, Wp, 3] float32``
      normalised, "image_info" ``[B, 5] float32`` (h, w, scale, H, W), "source_ids"
      ``[B] int64``; labels "gt_boxes" ``[B, M, 4] float32`` (ymin, xmin, ymax, xmax)
      in resized-image pixels, "gt_classes" ``[B, M] int32`` (padding -1 for both),
      "gt_masks" ``[B, M, S, S] float32`` in [0, 1] (padding 0). Crowd instances are
      left out when ``config.skip_crowd``.
    """
    examples, source_classes = _examples(source, training, seed, epoch, input_context,
                                         category_ids)
    if num_classes is not None and num_classes != source_classes:
        raise ValueError(f"Received: num_classes={num_classes}, but the source has "
                         f"{source_classes} classes (background included).")
    transform = functools.partial(prepare_example, config=config, training=training,
                                  padded_size=config.batch_padded_size(),
                                  flip_seed=_epoch_seed(seed, epoch))
    ds = examples.map(transform, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(local_batch_size(batch_size, input_context), drop_remainder=training)
    options = tf.data.Options()
    options.deterministic = True
    return ds.prefetch(AUTOTUNE).with_options(options)
