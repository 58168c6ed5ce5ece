"""EfficientNet backbones B0-B7: the scaling table against tf_keras.applications, pyramid levels."""
import pytest
import tensorflow as tf

from backbones.build import build_backbone
from backbones.configs import EFFICIENTNET_SCALING, efficientnet

#: the input sizes of the issue (and of keras.applications' EfficientNetB0..B7 defaults).
IMAGE_SIZES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528, "b7": 600}


def test_input_sizes_are_keras_applications_defaults():
    """Parameter counts (and every weight shape) equal keras.applications' B0-B7: proven by the exact import in
    tests/efficientnet_tf2/test_transfer.py::test_keras_applications_import_is_exact, which builds both."""
    assert {scale: efficientnet(scale).resolution for scale in EFFICIENTNET_SCALING} == IMAGE_SIZES


def test_backbone_exposes_pyramid_levels():
    backbone = build_backbone(efficientnet("b0"), input_shape=(128, 128, 3))
    outputs = backbone(tf.zeros([1, 128, 128, 3]))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        2: (1, 32, 32, 24), 3: (1, 16, 16, 40), 4: (1, 8, 8, 112), 5: (1, 4, 4, 1280)}


def test_unknown_scale_is_named():
    with pytest.raises(ValueError, match="b9.*known"):
        efficientnet("b9")
