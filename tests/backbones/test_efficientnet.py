"""EfficientNet backbones B0-B7: the scaling table against tf_keras.applications, pyramid levels."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from backbones.build import build_backbone
from backbones.configs import EFFICIENTNET_SCALING, efficientnet
from efficientnet_tf2.experiments import classifier_config
from efficientnet_tf2.model import build_classifier

#: the input sizes of the issue (and of keras.applications' EfficientNetB0..B7 defaults).
IMAGE_SIZES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528, "b7": 600}


def trainable_count(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


@pytest.mark.parametrize("scale", sorted(EFFICIENTNET_SCALING))
def test_trainable_params_equal_keras_applications(scale):
    """Computed live (weights=None: no download); both built at 64 px, which does not change the count."""
    index = int(scale[1])
    reference = getattr(keras.applications, f"EfficientNetB{index}")(weights=None, input_shape=(64, 64, 3))
    ours = build_classifier(classifier_config(f"efficientnet-{scale}"), input_shape=(64, 64, 3))
    assert trainable_count(ours) == trainable_count(reference)
    assert efficientnet(scale).resolution == IMAGE_SIZES[scale]
    keras.backend.clear_session()


def test_backbone_exposes_pyramid_levels():
    backbone = build_backbone(efficientnet("b0"), input_shape=(128, 128, 3))
    outputs = backbone(tf.zeros([1, 128, 128, 3]))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        2: (1, 32, 32, 24), 3: (1, 16, 16, 40), 4: (1, 8, 8, 112), 5: (1, 4, 4, 1280)}


def test_unknown_scale_is_named():
    with pytest.raises(ValueError, match="b9.*known"):
        efficientnet("b9")
