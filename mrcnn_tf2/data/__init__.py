"""Mask R-CNN input: COCO annotations, preprocessing and the tf.data pipeline.

* ``coco``          -- ``CocoDataset``: validated COCO JSON -> per-image records and masks.
* ``preprocessing`` -- resize/normalise/pad/flip and GT-mask cropping (pure tensor functions).
* ``pipeline``      -- ``InputConfig`` and ``build_dataset`` from a ``CocoDataset`` or TFRecords.
"""
from mrcnn_tf2.data.coco import CocoDataset
from mrcnn_tf2.data.pipeline import InputConfig, build_dataset
from mrcnn_tf2.data.preprocessing import preprocess_image

__all__ = ["CocoDataset", "InputConfig", "build_dataset", "preprocess_image"]
