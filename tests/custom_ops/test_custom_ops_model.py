"""Tiny Mask R-CNN with the custom ops on and off: same losses, gradients and detections.

Uses whichever op libraries build here (custom_ops/<op>/); skipped when none does.
"""
import numpy as np
import pytest
import tensorflow as tf

from custom_ops import build, loader
from mrcnn_tf2.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf2.task import compute_losses
from mrcnn_tf2.testing import tiny_config

B, SIZE, SEED = 2, 128, 3
TINY = tiny_config(**{"detection.score_threshold": 0.0})
AVAILABLE = [name for name in build.op_names() if loader.load(name) is not None]
pytestmark = pytest.mark.skipif(not AVAILABLE, reason="no custom op library available")


def make_inputs():
    rng = np.random.default_rng(0)
    masks = (rng.uniform(size=(B, 3, 112, 112)) > 0.5).astype("float32")
    return {"images": tf.constant(rng.normal(size=(B, SIZE, SIZE, 3)), tf.float32),
            "image_info": tf.constant([[SIZE, SIZE, 1.0, SIZE, SIZE], [SIZE, 96, 1.0, SIZE, 96]], tf.float32),
            "gt_boxes": tf.constant([[[10, 10, 60, 70], [30, 40, 120, 100], [0, 0, 0, 0]]] * B, tf.float32),
            "gt_classes": tf.constant([[1, 2, -1]] * B, tf.int32),
            "gt_masks": tf.constant(masks)}


@pytest.fixture(scope="module")
def model():
    return MaskRCNN(TINY, seed=SEED)


def train_step(model, inputs, custom_ops):
    """Loss terms and gradients of one training forward/backward pass (fixed sampling seed)."""
    model.sampling_generator.reset_from_seed(SEED)
    with tf.GradientTape() as tape:
        losses = compute_losses(model(inputs, training=True, custom_ops=custom_ops), model.config)
        total = tf.add_n(list(losses.values()))
    return {k: v.numpy() for k, v in losses.items()}, tape.gradient(total, model.trainable_variables)


def test_train_step_on_and_off(model):
    inputs = make_inputs()
    losses_on, grads_on = train_step(model, inputs, custom_ops=True)
    losses_off, grads_off = train_step(model, inputs, custom_ops=False)
    for name in losses_on:
        np.testing.assert_allclose(losses_on[name], losses_off[name], rtol=1e-4, atol=1e-6, err_msg=name)
    for variable, on, off in zip(model.trainable_variables, grads_on, grads_off):
        if on is None or off is None:
            assert on is None and off is None, variable.name
            continue
        scale = max(float(np.abs(off.numpy()).max()), 1e-6)
        np.testing.assert_allclose(on.numpy(), off.numpy(), atol=1e-3 * scale, err_msg=variable.name)


def test_inference_on_and_off(model):
    inputs = make_inputs()
    on = model(inputs, training=False, custom_ops=True)
    off = model(inputs, training=False, custom_ops=False)
    np.testing.assert_array_equal(on["num_detections"].numpy(), off["num_detections"].numpy())
    np.testing.assert_array_equal(on["detection_classes"].numpy(), off["detection_classes"].numpy())
    for key in ("detection_boxes", "detection_scores", "detection_masks"):
        np.testing.assert_allclose(on[key].numpy(), off[key].numpy(), atol=1e-4, rtol=1e-4, err_msg=key)
