"""Mask R-CNN input: COCO annotations, preprocessing and the tf.data pipeline.

* ``coco``          -- ``CocoDataset``: validated COCO JSON -> per-image records and masks.
* ``preprocessing`` -- resize/normalise/pad/flip and GT-mask cropping (pure tensor functions).
* ``inputs``        -- ``InputConfig``: resize/pad/flip settings of the batches.
* ``pipeline``      -- ``build_dataset`` from a ``CocoDataset`` or TFRecords.
"""
from mrcnn_tf2.data.coco import CocoDataset
from mrcnn_tf2.data.inputs import InputConfig
from mrcnn_tf2.data.pipeline import build_dataset
from mrcnn_tf2.data.preprocessing import preprocess_image

__all__ = ["CocoDataset", "InputConfig", "build_dataset", "preprocess_image"]
