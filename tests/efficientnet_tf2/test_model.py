"""Classifiers on EfficientNet backbones: NVIDIA's parameter counts, forward/backward, serialization."""
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from backbones.configs import decode_block_string
from efficientnet_tf2.experiments import classifier_config, classifier_names
from efficientnet_tf2.model import build_classifier

FIXTURES = pathlib.Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "ngc_efficientnet"
NVIDIA_PARAMS = {"efficientnet-b0": 5288548, "efficientnet-b4": 19341616,
                 "efficientnet-widese-b0": 8423848, "efficientnet-widese-b4": 34927246}


def trainable_count(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


@pytest.mark.parametrize("name", sorted(NVIDIA_PARAMS))
def test_trainable_params_match_nvidia(name):
    model = build_classifier(classifier_config(name), input_shape=(64, 64, 3))
    assert trainable_count(model) == NVIDIA_PARAMS[name]


def test_reference_counts_fixture_agrees():
    path = FIXTURES / "reference_param_counts.json"
    if not path.exists():
        pytest.skip(f"shared fixture {path} not present (tests may read ../shared, CI has it)")
    reference = json.loads(path.read_text())
    assert {k: v["params"] for k, v in reference.items()} == NVIDIA_PARAMS


def test_default_resolutions_and_regularisation():
    b0, b4 = classifier_config("efficientnet-b0"), classifier_config("efficientnet-b4")
    assert (b0.resolution, b0.dropout_rate, b0.backbone.drop_connect_rate) == (224, 0.2, 0.2)
    assert (b4.resolution, b4.dropout_rate, b4.backbone.drop_connect_rate) == (380, 0.4, 0.2)


def test_wide_se_squeezes_expanded_width():
    narrow = build_classifier(classifier_config("efficientnet-b0"), input_shape=(32, 32, 3))
    wide = build_classifier(classifier_config("efficientnet-widese-b0"), input_shape=(32, 32, 3))
    # block2a: input 16 channels, expanded 96: SE width 4 (standard) vs 24 (WideSE).
    assert narrow.get_layer("block2a_se_reduce").units == 4
    assert wide.get_layer("block2a_se_reduce").units == 24


def test_block_string_decoding():
    args = decode_block_string("ir_r2_k5_s2_e6_c40_se0.25")
    assert (args.num_repeat, args.kernel_size, args.strides, args.expand_ratio, args.output_filters,
            args.se_ratio) == (2, 5, 2, 6, 40, 0.25)
    with pytest.raises(ValueError, match="Unknown block type"):
        decode_block_string("xx_r1_k3_s1_e1_c16")


# NVIDIA's variants and the ResNet-50 classifier; B1-B3 and B5-B7 are built against keras.applications in
# tests/backbones/test_efficientnet.py and train a step in tests/common/test_registry.py.
@pytest.mark.parametrize("name", [n for n in classifier_names() if n[-2:] not in ("b1", "b2", "b3", "b5", "b6", "b7")])
def test_forward_backward_small_resolution(name):
    model = build_classifier(classifier_config(name, num_classes=7), input_shape=(64, 64, 3))
    images = tf.random.normal([2, 64, 64, 3])
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits([1, 3], logits))
    grads = tape.gradient(loss, model.trainable_variables)
    assert logits.shape == (2, 7) and logits.dtype == tf.float32
    assert all(g is not None for g in grads)
    assert all(bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads)


def test_get_config_round_trip():
    model = build_classifier(classifier_config("efficientnet-b0", num_classes=5), input_shape=(48, 48, 3))
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = tf.random.normal([1, 48, 48, 3])
    np.testing.assert_allclose(model(x, training=False), clone(x, training=False), atol=1e-5)
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]


def test_symmetric_padding_differs_only_at_stride_two():
    config = classifier_config("efficientnet-b0", padding="symmetric", num_classes=3)
    model = build_classifier(config, input_shape=(64, 64, 3))
    pads = [layer for layer in model.layers if isinstance(layer, keras.layers.ZeroPadding2D)]
    assert len(pads) == 5  # stem + four stride-2 depthwise convs
    assert trainable_count(model) == trainable_count(build_classifier(
        classifier_config("efficientnet-b0", num_classes=3), input_shape=(64, 64, 3)))
    with pytest.raises(ValueError, match="padding"):
        classifier_config("efficientnet-b0", padding="reflect")


def test_unknown_model_lists_available():
    with pytest.raises(SystemExit, match="efficientnet-b0"):
        classifier_config("efficientnet-b9")
