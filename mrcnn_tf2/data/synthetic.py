"""Random Mask R-CNN batches of the real shapes (``--use_synthetic_data``, benchmarks).

One batch is generated once and repeated, so the input pipeline costs nothing and
the step time is the model's. Boxes are valid (inside the image, 32..256 px) so
every part of the training graph (matching, sampling, mask targets) does real work.
"""
from __future__ import annotations

import tensorflow as tf

from mrcnn_tf2.config import MaskRCNNConfig
from mrcnn_tf2.data.inputs import InputConfig


def synthetic_batch(model_config: MaskRCNNConfig, inputs: InputConfig, batch_size: int, seed: int = 0,
                    num_instances: int = 8):
    """``(features, labels)`` with the shapes of :func:`build_dataset` batches."""
    height, width = inputs.batch_padded_size()
    m, g = inputs.max_instances, inputs.gt_mask_size
    seeds = [(seed, i) for i in range(5)]
    images = tf.random.stateless_normal([batch_size, height, width, 3], seeds[0])
    sizes = tf.random.stateless_uniform([batch_size, num_instances, 2], seeds[1], 32.0,
                                        min(256.0, height / 2.0, width / 2.0))
    corner = tf.random.stateless_uniform([batch_size, num_instances, 2], seeds[2]) * \
        (tf.constant([height, width], tf.float32) - sizes)
    boxes = tf.concat([corner, corner + sizes], axis=-1)
    classes = tf.random.stateless_uniform([batch_size, num_instances], seeds[3], 1,
                                          model_config.num_classes, dtype=tf.int32)
    masks = tf.cast(tf.random.stateless_uniform([batch_size, num_instances, g, g], seeds[4]) > 0.5, tf.float32)
    pad = m - num_instances
    labels = {"gt_boxes": tf.pad(boxes, [[0, 0], [0, pad], [0, 0]], constant_values=-1.0),
              "gt_classes": tf.pad(classes, [[0, 0], [0, pad]], constant_values=-1),
              "gt_masks": tf.pad(masks, [[0, 0], [0, pad], [0, 0], [0, 0]])}
    info = tf.tile(tf.constant([[height, width, 1.0, height, width]], tf.float32), [batch_size, 1])
    features = {"images": images, "image_info": info,
                "source_ids": tf.range(batch_size, dtype=tf.int64)}
    return features, labels


def synthetic_dataset(model_config: MaskRCNNConfig, inputs: InputConfig, batch_size: int,
                      training: bool = True, steps: int = 100) -> tf.data.Dataset:
    """``steps`` copies of one cached synthetic batch (eval: a single batch)."""
    batch = synthetic_batch(model_config, inputs, batch_size)
    return tf.data.Dataset.from_tensors(batch).repeat(steps if training else 1)
