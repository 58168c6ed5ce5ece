"""SavedModel export: both signatures reproduce the Keras model's probabilities."""
import io
import logging

import numpy as np
import tensorflow as tf
from PIL import Image

from common.io import saved_model
from efficientnet_tf2.experiments import classifier_config
from efficientnet_tf2.export import export_saved_model
from efficientnet_tf2.model import build_classifier
from efficientnet_tf2.preprocessing import preprocess_for_eval


def test_saved_model_round_trip(tmp_path, caplog):
    tf.random.set_seed(0)
    model = build_classifier(classifier_config("efficientnet-b0", num_classes=6), input_shape=(64, 64, 3))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 80, 72, 3), dtype=np.uint8)
    export_dir = export_saved_model(model, str(tmp_path / "sm"), image_size=64, class_names=list("abcdef"))

    expected = tf.nn.softmax(model(tf.stack([preprocess_for_eval(i, 64) for i in images]), training=False))
    with caplog.at_level(logging.WARNING):
        loaded = saved_model.load(export_dir)  # what export --verify loads: no unactionable gradient warnings
    assert not [r for r in caplog.records if "custom gradients" in r.getMessage()]
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    np.testing.assert_array_equal(out["classes"], np.argmax(expected, -1))

    encoded = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")  # lossless: same pixels as `images`
        encoded.append(buf.getvalue())
    out_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    np.testing.assert_allclose(out_bytes["probabilities"], expected, atol=1e-5)
    assert out_bytes["valid"].numpy().tolist() == [True, True]
    # one unusable image does not fail the batch: it is flagged and blanked, the others are served
    mixed = loaded.signatures["serving_bytes"](image_bytes=tf.constant([encoded[0], encoded[1][:300], b""]))
    assert mixed["valid"].numpy().tolist() == [True, False, False]
    np.testing.assert_allclose(mixed["probabilities"][0], expected[0], atol=1e-5)
    assert not mixed["probabilities"][1:].numpy().any() and mixed["labels"].numpy()[1] == b""
    assert [s.decode() for s in loaded.class_names.numpy()] == list("abcdef")
    assert out["labels"].numpy()[0].decode() == "abcdef"[int(out["classes"][0])]
