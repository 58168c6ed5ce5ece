"""SavedModel export of a classifier with two serving signatures.

* ``serving_default``: ``images`` uint8 ``[B, H, W, 3]`` (any H, W) ->
  ``probabilities`` float32 ``[B, C]``, ``classes`` int32 ``[B]``,
  ``labels`` string ``[B]`` (class names).
* ``serving_bytes``: ``image_bytes`` string ``[B]`` (encoded JPEG/PNG) -> same, plus
  ``valid`` bool ``[B]``: an image that is not a whole JPEG/PNG/GIF/BMP/WebP does not fail
  the batch; it gets ``valid`` False, zero probabilities, class 0 and an empty label
  (:mod:`common.io.serving`).

Both apply the eval preprocessing of training (resize to size+32, center
crop, ImageNet normalisation), so clients send raw pixels or files.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from common.io import saved_model
from common.io.serving import blank_invalid, decode_checked
from efficientnet_tf2.preprocessing import eval_resize_crop, normalize


class ClassifierModule(tf.Module):
    """Wraps a Keras classifier with preprocessing and softmax (tracks its weights, not the model)."""

    def __init__(self, model, image_size: int, class_names: Sequence[str]):
        super().__init__(name="classifier")
        self._model = saved_model.Untracked(model)
        self.model_weights = list(model.weights)
        self.image_size = int(image_size)
        self.class_names = tf.Variable(list(class_names), dtype=tf.string, trainable=False, name="class_names")

    @property
    def model(self):
        """The wrapped Keras classifier."""
        return self._model.value

    def _prepare(self, image):
        """uint8 ``[H, W, 3]`` -> normalised float32 ``[S, S, 3]``."""
        return normalize(eval_resize_crop(image, self.image_size))

    def _predict(self, batch):
        logits = tf.cast(self.model(batch, training=False), tf.float32)
        probs = tf.nn.softmax(logits, axis=-1)
        classes = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return {"probabilities": probs, "classes": classes, "labels": tf.gather(self.class_names, classes)}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve_images(self, images):
        batch = tf.map_fn(self._prepare, images, fn_output_signature=tf.float32)
        return self._predict(batch)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes):
        def decode(data):
            image, valid = decode_checked(data, lambda d: tf.io.decode_image(
                d, channels=3, expand_animations=False, dtype=tf.uint8))
            return self._prepare(image), valid

        batch, valid = tf.map_fn(decode, image_bytes, fn_output_signature=(tf.float32, tf.bool))
        return blank_invalid(self._predict(batch), valid)


def export_saved_model(model, export_dir: str, image_size: int, class_names: Sequence[str],
                       overwrite: bool = False) -> str:
    """Writes ``export_dir`` with ``serving_default`` and ``serving_bytes`` signatures, atomically
    (:func:`common.io.saved_model.save`; an existing folder is replaced only with ``overwrite``)."""
    module = ClassifierModule(model, image_size, class_names)
    signatures = {"serving_default": module.serve_images.get_concrete_function(),
                  "serving_bytes": module.serve_bytes.get_concrete_function()}
    return saved_model.save(module, export_dir, signatures, overwrite=overwrite)


def verify_saved_model(model, export_dir: str, image_size: int, paths: Sequence[str], tolerance: float = 1e-4) -> float:
    """Max |probability difference| of the reloaded ``serving_bytes`` and Keras on image files.

    Raises:
      SystemExit: the difference exceeds ``tolerance`` (one line).
    """
    import numpy as np

    from efficientnet_tf2.inference import Classifier

    loaded = saved_model.load(export_dir)
    classifier = Classifier(model, image_size, [])
    worst = 0.0
    for path in paths:
        with open(path, "rb") as f:
            served = loaded.signatures["serving_bytes"](image_bytes=tf.constant([f.read()]))
        worst = max(worst, float(np.max(np.abs(served["probabilities"].numpy()[0] - classifier.probabilities(path)))))
    if worst > tolerance:
        raise SystemExit(f"error: exported model differs from Keras by {worst:.2e} (> {tolerance:g})")
    return worst
