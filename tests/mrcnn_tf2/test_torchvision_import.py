"""torchvision ResNet-50 -> the Mask R-CNN backbone: exact import, proven against torchvision's own outputs.

The fixture (``scripts/make_torchvision_fixture.py``, run once where torch is installed) holds the
calibrated BatchNorm statistics, an image and torchvision's C2-C5 on it; the weights themselves are
re-created here without torch (``random_torch_weights``, same seed).
"""
import json
import os

import numpy as np
import pytest

from mrcnn_tf2.config import TORCHVISION_BACKBONE
from mrcnn_tf2.modeling.resnet import build_resnet, load_backbone_weights
from mrcnn_tf2.testing import random_torch_weights
from mrcnn_tf2.torchvision_import import (TorchvisionCheckpointError, backbone_module_name,
                                          load_backbone_state_dict)

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "torchvision")
MEAN, STD = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
TORCHVISION_LAYOUT = TORCHVISION_BACKBONE


@pytest.fixture(scope="module")
def reference():
    with open(os.path.join(FIXTURES, "resnet50.json")) as f:
        meta = json.load(f)
    with np.load(os.path.join(FIXTURES, "resnet50.npz")) as arrays:
        stored = {k: arrays[k] for k in arrays.files}
    state = random_torch_weights(meta["shapes"], meta["seed"])
    state.update({k: v for k, v in stored.items() if k.endswith(("running_mean", "running_var"))})
    state["fc.weight"] = np.zeros((1000, 2048), np.float32)  # the ImageNet head is ignored
    return meta, stored, state


@pytest.fixture(scope="module")
def imported(reference):
    _, _, state = reference
    backbone = build_resnet(50, freeze_at=0, **TORCHVISION_LAYOUT)
    assert load_backbone_state_dict(backbone, state) == 265  # 53 convs + 53 BN x 4
    return backbone


def test_module_names():
    assert backbone_module_name("conv1_conv") == "conv1" and backbone_module_name("conv1_bn") == "bn1"
    assert backbone_module_name("conv2_block3_2_conv") == "layer1.2.conv2"
    assert backbone_module_name("conv3_block1_0_bn") == "layer2.0.downsample.1"
    assert backbone_module_name("conv5_block1_0_conv") == "layer4.0.downsample.0"
    assert backbone_module_name("pool1_pool") is None


def test_c2_to_c5_equal_torchvision(reference, imported):
    meta, stored, _ = reference
    image = ((stored["image"].astype(np.float32) / 255.0 - MEAN) / STD)[None]
    features = imported(image, training=False)
    for level in range(2, 6):
        ours = features[level].numpy()[0][..., meta["channels"][str(level)]]
        theirs = stored[f"c{level}"]
        assert ours.shape == theirs.shape
        relative = np.abs(ours - theirs).max() / np.abs(theirs).max()
        print(f"C{level}: max |TF - torchvision| / max |torchvision| = {relative:.2e}")
        assert relative <= 1e-4, f"C{level}: max |TF - torchvision| / max |torchvision| = {relative:.2e}"


def test_a_detector_checkpoint_backbone_loads_too(reference):
    _, _, state = reference
    detector_state = {f"backbone.body.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    detector_state["rpn.head.conv.0.0.weight"] = np.zeros((256, 256, 3, 3), np.float32)  # not the backbone's
    backbone = build_resnet(50, **TORCHVISION_LAYOUT)
    load_backbone_state_dict(backbone, detector_state)
    np.testing.assert_array_equal(backbone.get_layer("conv1_bn").moving_mean.numpy(), state["bn1.running_mean"])
    assert not backbone.get_layer("conv2_block1_1_conv").bias.numpy().any()


def test_errors_name_the_keys_and_assign_nothing(reference, tmp_path):
    _, _, state = reference
    backbone = build_resnet(50, **TORCHVISION_LAYOUT)
    before = backbone.get_layer("conv1_conv").kernel.numpy()
    broken = {k: v for k, v in state.items() if k != "layer3.2.bn2.weight"}
    broken["layer9.0.conv1.weight"] = np.zeros(3, np.float32)
    broken["conv1.weight"] = np.zeros((64, 3, 3, 3), np.float32)
    with pytest.raises(TorchvisionCheckpointError) as info:
        load_backbone_state_dict(backbone, broken)
    message = str(info.value)
    assert "1 missing key(s): layer3.2.bn2.weight" in message and "layer9.0.conv1.weight" in message
    assert "conv1.weight: expected (64, 3, 7, 7), found (64, 3, 3, 3)" in message
    np.testing.assert_array_equal(backbone.get_layer("conv1_conv").kernel.numpy(), before)
    path = tmp_path / "resnet50.npz"
    np.savez(path, **state)
    load_backbone_weights(backbone, str(path))  # --backbone-checkpoint with an .npz state_dict
    np.testing.assert_array_equal(backbone.get_layer("conv1_bn").moving_variance.numpy(), state["bn1.running_var"])


def test_backbone_checkpoint_pth_selects_torchvisions_layout():
    """NVIDIA's recipe on torchvision's v1.5 ImageNet weights: the backbone takes their layout."""
    from common import cli
    from mrcnn_tf2.family import FAMILY

    def backbone(path):
        experiment = cli.parse(["train", "--model", "mask-rcnn", "--use-synthetic-data",
                                "--backbone-checkpoint", path]).experiment
        return FAMILY._resolve(experiment, None).task.model.backbone

    torchvision = backbone("resnet50-0676ba61.pth")
    assert (torchvision.stride_in_1x1, torchvision.bn_epsilon, torchvision.padding) == (False, 1e-5, "symmetric")
    assert torchvision.freeze_at == 2 and not torchvision.finetune_bn  # NVIDIA's frozen BN and stages
    keras_h5 = backbone("resnet50.h5")
    assert (keras_h5.stride_in_1x1, keras_h5.padding) == (True, "same")
