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
from backbones.resnet import build_resnet
from mrcnn_tf2.testing import random_torch_weights, torchvision_detector_state
from mrcnn_tf2.torchvision_import import (TorchvisionCheckpointError, backbone_module_name,
                                          load_backbone_checkpoint, load_backbone_state_dict)

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
    load_backbone_checkpoint(backbone, str(path))  # --backbone-checkpoint with an .npz state_dict
    np.testing.assert_array_equal(backbone.get_layer("conv1_bn").moving_variance.numpy(), state["bn1.running_var"])


def test_a_weights_file_never_chooses_the_layout():
    """NVIDIA's recipe on torchvision's v1.5 ImageNet weights: the backbone layout is the experiment's; a
    torchvision file on the Keras layout is one line naming the fields that fit it (and they work)."""
    from common.command import cli
    from mrcnn_tf2.family import FAMILY

    def backbone(path, *flags):
        experiment = cli.parse(["train", "--model", "mask-rcnn", "--use-synthetic-data",
                                "--backbone-checkpoint", path, *flags]).experiment
        return FAMILY._resolve(experiment, None).task.model.backbone

    with pytest.raises(SystemExit, match="--config backbone.stride_in_1x1=False backbone.bn_epsilon=1e-05"):
        backbone("resnet50-0676ba61.pth")
    fix = [f"backbone.{k}={v}" for k, v in TORCHVISION_BACKBONE.items()]
    torchvision = backbone("resnet50-0676ba61.pth", "--config", *fix)
    assert (torchvision.stride_in_1x1, torchvision.bn_epsilon, torchvision.padding) == (False, 1e-5, "symmetric")
    assert torchvision.freeze_at == 2 and not torchvision.finetune_bn  # NVIDIA's frozen BN and stages
    keras_h5 = backbone("resnet50.h5")
    assert (keras_h5.stride_in_1x1, keras_h5.padding) == (True, "same")
    with pytest.raises(SystemExit, match="--model mask-rcnn-torchvision"):
        FAMILY._resolve(cli.parse(["info", "--model", "mask-rcnn", "--pretrained-from-file", "coco.pth"]).experiment,
                        None)


# ----------------------------------------------------------------- the whole detector
@pytest.fixture(scope="module")
def detector_reference(reference):
    with open(os.path.join(FIXTURES, "detector.json")) as f:
        meta = json.load(f)
    with np.load(os.path.join(FIXTURES, "detector.npz")) as arrays:
        stored = {k: arrays[k] for k in arrays.files}
    return meta, stored, torchvision_detector_state(FIXTURES), reference[1]["image"]


def _detector(num_classes=91, **overrides):
    from mrcnn_tf2.config import MaskRCNNConfig
    from mrcnn_tf2.task import built_model

    config = MaskRCNNConfig().override(**{"num_classes": num_classes, "image_size": (448, 640),
                                          **{f"backbone.{k}": v for k, v in TORCHVISION_BACKBONE.items()},
                                          **overrides})
    return built_model(config)


@pytest.fixture(scope="module")
def detector(detector_reference):
    from mrcnn_tf2.torchvision_import import load_detector_state_dict

    model = _detector()
    assert load_detector_state_dict(model, detector_reference[2]) == 307
    return model


def _relative(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def _roi_features(meta, size):
    """The fixture's seeded RoI features, ``[1, S, size, size, 256]`` (torch made them ``[S, 256, size, size]``)."""
    rng = np.random.default_rng(meta["roi_seed"] + size)
    features = rng.normal(0.0, 1.0, (meta["num_rois"], 256, size, size)).astype(np.float32)
    return features.transpose(0, 2, 3, 1)[None]


def test_fpn_and_rpn_head_equal_torchvision(detector_reference, detector):
    from mrcnn_tf2.torchvision_import import DELTA_ORDER

    meta, stored, _, image = detector_reference
    features = detector.fpn(detector.backbone((((image / 255.0 - MEAN) / STD).astype(np.float32))[None]))
    scores, deltas = detector.rpn_head(features)
    order = (np.arange(3)[:, None] * 4 + np.asarray(DELTA_ORDER)[None]).reshape(-1)
    for level in range(2, 7):
        figures = {"P": _relative(features[level].numpy()[0][..., meta["channels"]], stored[f"p{level}"]),
                   "objectness": _relative(scores[level].numpy()[0], stored[f"rpn_scores_{level}"]),
                   "deltas": _relative(deltas[level].numpy()[0], stored[f"rpn_deltas_{level}"][..., order])}
        print(f"P{level}: " + ", ".join(f"{k} {v:.1e}" for k, v in figures.items()))
        assert max(figures.values()) <= 1e-3, (level, figures)


def test_box_and_mask_heads_equal_torchvision(detector_reference, detector):
    from mrcnn_tf2.torchvision_import import DELTA_ORDER

    meta, stored, _, _ = detector_reference
    logits, deltas = detector.box_head(_roi_features(meta, 7))
    order = (np.arange(91)[:, None] * 4 + np.asarray(DELTA_ORDER)[None]).reshape(-1)
    assert _relative(logits.numpy()[0], stored["box_logits"]) <= 1e-4
    assert _relative(deltas.numpy()[0], stored["box_deltas"][:, order]) <= 1e-4
    masks = detector.mask_head(_roi_features(meta, 14)).numpy()[0]
    assert _relative(masks[..., meta["mask_classes"]], stored["mask_logits"]) <= 1e-4


def test_fine_tuning_with_another_class_count_reinitialises_only_the_predictors(detector_reference, caplog):
    import logging

    from mrcnn_tf2.torchvision_import import load_detector_state_dict

    state = detector_reference[2]
    model = _detector(num_classes=4)
    heads = {"class_logits": model.box_head.class_dense, "box_deltas": model.box_head.box_dense,
             "mask_logits": model.mask_head.logits}
    fresh = {name: layer.kernel.numpy() for name, layer in heads.items()}
    with caplog.at_level(logging.WARNING, logger="mrcnn_tf2.torchvision_import"):
        assert load_detector_state_dict(model, state) == 307 - 6
    assert "box_head/class_logits, box_head/box_deltas and mask_head/mask_logits keep" in caplog.text
    for name, kernel in fresh.items():
        np.testing.assert_array_equal(heads[name].kernel.numpy(), kernel)
    np.testing.assert_array_equal(model.box_head.fcs[1].kernel.numpy(), state["roi_heads.box_head.fc7.weight"].T)
    np.testing.assert_array_equal(model.mask_head.deconv.bias.numpy(),
                                  state["roi_heads.mask_predictor.conv5_mask.bias"])


def test_anchors_equal_torchvisions():
    """Centres at ``i * stride``, rounded half sizes, P6 stride 800 // 13 = 61 by 1184 // 19 = 62."""
    import dataclasses

    from mrcnn_tf2.config import TORCHVISION_ANCHORS, AnchorConfig
    from mrcnn_tf2.ops.anchors import AnchorGenerator

    with np.load(os.path.join(FIXTURES, "anchors.npz")) as arrays:
        stored = {k: arrays[k] for k in arrays.files}
    generator = AnchorGenerator(**{**dataclasses.asdict(AnchorConfig()), **TORCHVISION_ANCHORS})
    size = tuple(int(v) for v in stored["image_size"])
    assert generator.level_strides(size, 6) == (61, 62)
    for level, count in zip(range(2, 7), stored["counts"]):
        ours = generator.level_anchors(size, level)
        assert len(ours) == count
        np.testing.assert_allclose(ours[::int(stored["every"])][:, [1, 0, 3, 2]], stored[f"anchors_{level}"],
                                   atol=1e-4, err_msg=f"P{level}")


def test_rpn_proposals_equal_torchvisions(detector_reference, detector):
    """Top 1000 per level, NMS 0.7 within each level, the 1000 best of the image (sizes >= 1e-3 px)."""
    import dataclasses

    from mrcnn_tf2.config import TORCHVISION_ANCHORS, AnchorConfig
    from mrcnn_tf2.ops.anchors import AnchorGenerator
    from mrcnn_tf2.ops.proposals import generate_proposals

    _, stored, _, image = detector_reference
    size = image.shape[:2]
    features = detector.fpn(detector.backbone((((image / 255.0 - MEAN) / STD).astype(np.float32))[None]))
    scores, deltas = detector.rpn_head(features)
    anchors = AnchorGenerator(**{**dataclasses.asdict(AnchorConfig()), **TORCHVISION_ANCHORS})(size)
    info = np.array([[size[0], size[1], 1.0, size[0], size[1]]], np.float32)
    proposals = generate_proposals(scores, deltas, anchors, info, pre_nms_topk=1000, post_nms_topk=1000,
                                   nms_threshold=0.7, min_size=1e-3)
    count = int(proposals.valid.numpy().sum())
    theirs = stored["proposals"]
    assert count == len(theirs), (count, len(theirs))
    ours = proposals.boxes.numpy()[0, :count][:, [1, 0, 3, 2]]
    # the same boxes in the same order, except where two scores tie within float noise (swapped; each
    # swapped box must be one of torchvision's near-tied ones)
    in_order = np.abs(ours - theirs).max(-1)
    ties = np.abs(stored["proposal_scores"][:, None] - stored["proposal_scores"][None, :]) <= 1e-4
    swapped = np.flatnonzero(in_order > 0.5)
    for i in swapped:
        candidates = np.flatnonzero(ties[i])
        assert np.abs(theirs[candidates] - ours[i]).max(-1).min() <= 0.5, f"proposal {i}: {ours[i]} not in torchvision's"
    worst = float(in_order[in_order <= 0.5].max())
    score_delta = float(np.abs(proposals.scores.numpy()[0, :count] - stored["proposal_scores"]).max())
    print(f"RPN proposals: {count} (torchvision {len(theirs)}), max |box delta| {worst:.1e} px, "
          f"{len(swapped)} swapped by near-ties, max |score delta| {score_delta:.1e}")
    assert score_delta <= 1e-4


def _features(detector, image):
    return detector.fpn(detector.backbone((((image / 255.0 - MEAN) / STD).astype(np.float32))[None]))


def _yxyx(xyxy):
    return np.asarray(xyxy, np.float32)[..., [1, 0, 3, 2]]


def test_box_head_on_torchvisions_proposals_and_its_detections(detector_reference, detector):
    """MultiScaleRoIAlign (7x7, sampling 2, aligned=False, FPN level rule), TwoMLPHead, the predictor,
    then softmax, (10, 10, 5, 5) decode, clip, score > 0.05, class-wise NMS 0.5, 100 detections."""
    from mrcnn_tf2.ops.detections import generate_detections

    meta, stored, _, image = detector_reference
    features = _features(detector, image)
    rois = _yxyx(stored["proposals"])[None]
    logits, deltas = detector.box_head(detector._roi_features(features, rois, mask=False))
    kept = (np.asarray(meta["mask_classes"])[:, None] * 4 + np.asarray([1, 0, 3, 2])[None]).reshape(-1)
    figures = {"logits": _relative(logits.numpy()[0], stored["head_logits"]),
               "deltas": _relative(deltas.numpy()[0][:, kept], stored["head_deltas"])}
    print("box head on torchvision's proposals: " + ", ".join(f"{k} {v:.1e}" for k, v in figures.items()))
    assert max(figures.values()) <= 1e-3, figures

    size = image.shape[:2]
    info = np.array([[size[0], size[1], 1.0, size[0], size[1]]], np.float32)
    found = generate_detections(logits, deltas, rois, info, max_detections=100, nms_threshold=0.5,
                                score_threshold=0.05, weights=(10.0, 10.0, 5.0, 5.0), min_size=1e-2)
    count = int(found["num_detections"][0])
    boxes = found["detection_boxes"].numpy()[0, :count][:, [1, 0, 3, 2]]
    labels, scores = found["detection_classes"].numpy()[0, :count], found["detection_scores"].numpy()[0, :count]
    print(f"detections: {count} (torchvision {len(stored['detection_labels'])}), "
          f"max |box delta| {np.abs(boxes - stored['detection_boxes']).max():.1e} px, "
          f"max |score delta| {np.abs(scores - stored['detection_scores']).max():.1e}")
    assert count == len(stored["detection_labels"])
    np.testing.assert_array_equal(labels, stored["detection_labels"])
    np.testing.assert_allclose(boxes, stored["detection_boxes"], atol=0.5)
    np.testing.assert_allclose(scores, stored["detection_scores"], atol=1e-4)


def test_mask_probabilities_on_torchvisions_detections(detector_reference, detector):
    """MultiScaleRoIAlign 14x14 on the detections, 4 x conv + deconv + logits, sigmoid of the label."""
    _, stored, _, image = detector_reference
    features = _features(detector, image)
    logits = detector.mask_head(detector._roi_features(features, _yxyx(stored["detection_boxes"])[None], mask=True))
    picked = np.take_along_axis(logits.numpy()[0], stored["detection_labels"][:, None, None, None], axis=-1)[..., 0]
    probabilities = 1.0 / (1.0 + np.exp(-picked))
    worst = float(np.abs(probabilities - stored["mask_probabilities"]).max())
    print(f"mask probabilities (28x28, {len(picked)} detections): max |delta| {worst:.1e}")
    assert worst <= 1e-3


def test_pasted_masks_equal_torchvisions(detector_reference):
    """``paste_masks_in_image(probabilities, boxes, (H, W), padding=1) > 0.5`` per detection, IoU >= 0.98."""
    from pycocotools import mask as mask_utils

    from mrcnn_tf2.ops.paste_masks import paste_masks_torchvision

    _, stored, _, image = detector_reference
    ours = paste_masks_torchvision(stored["mask_probabilities"], _yxyx(stored["detection_boxes"]),
                                   image.shape[:2], threshold=0.5).numpy()
    from mrcnn_tf2.ops.paste_masks import paste_masks_numpy

    numpy_path = paste_masks_numpy(stored["mask_probabilities"], _yxyx(stored["detection_boxes"]), image.shape[:2],
                                   threshold=0.5, mode="torchvision")  # the COCO evaluator's path
    np.testing.assert_array_equal(numpy_path, ours)
    height, width = image.shape[:2]
    theirs = mask_utils.decode([{"size": [height, width], "counts": c.encode()} for c in stored["mask_rle_counts"]])
    theirs = theirs.transpose(2, 0, 1)
    inter = np.logical_and(ours, theirs).sum((1, 2))
    union = np.logical_or(ours, theirs).sum((1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    print(f"pasted masks: {len(iou)} detections, min IoU {iou.min():.4f}, "
          f"{int((ours != theirs).sum())} of {ours.size} pixels differ")
    assert iou.min() >= 0.98


def test_fine_tuning_from_the_imported_coco_layout_on_the_shapes(detector_reference, tmp_path):
    """``--pretrained-from-file coco.npz`` on a 4-class data set: torchvision's layout, predictors fresh,
    every other layer the import's; a few steps on one batch lower the loss."""
    import tensorflow as tf
    import tf_keras as keras

    from common.command import cli
    from dataset.make_synthetic_shapes import make_dataset
    from mrcnn_tf2.family import FAMILY

    state = detector_reference[2]
    weights = str(tmp_path / "coco.npz")
    np.savez(weights, **state)
    data = make_dataset(str(tmp_path / "shapes"), num_train=4, num_val=2, image_size=128, seed=0)["root"]
    invocation = cli.parse(["train", "--model", "mask-rcnn-torchvision", "--data-dir", data, "--workspace", str(tmp_path / "w"),
                            "--pretrained-from-file", weights, "--image-size", "128", "128", "--seed", "0"])
    task, experiment = FAMILY.build_task(invocation.experiment, training=True)
    config = experiment.task.model
    assert config.num_classes == 4 and config.anchors.offset == 0.0 and config.backbone.padding == "symmetric"
    assert (config.rpn.min_size, config.detection.score_threshold, config.detection.min_size,
            config.detection.mask_paste) == (1e-3, 0.05, 1e-2, "torchvision")
    model = FAMILY.build_model(experiment, task)
    np.testing.assert_array_equal(model.box_head.fcs[0].bias.numpy(), state["roi_heads.box_head.fc6.bias"])
    np.testing.assert_array_equal(model.mask_head.convs[3].bias.numpy(), state["roi_heads.mask_head.3.0.bias"])
    assert model.box_head.class_dense.kernel.shape == (1024, 4)

    batch = next(iter(task.build_train_dataset(2, epoch=0)))
    optimizer = keras.optimizers.Adam(1e-4)
    losses = []
    for _ in range(4):
        with tf.GradientTape() as tape:
            loss, _ = task.train_loss(model, batch)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        losses.append(float(loss))
    print(f"fine-tuning losses on one batch: {[round(x, 3) for x in losses]}")
    assert losses[-1] < losses[0], losses


TORCHVISION_INPUT = dict(image_size=(800, 1333), pad_multiple=32, size_rounding="floor", box_scaling="per_axis",
                         per_image_canvas=True)


def test_input_transform_equals_torchvisions(detector_reference):
    """GeneralizedRCNNTransform: short side 800 (long <= 1333), floor sizes, normalise, pad to 32."""
    import tensorflow as tf

    from mrcnn_tf2.data.inputs import InputConfig
    from mrcnn_tf2.data.preprocessing import preprocess_image

    _, stored, _, image = detector_reference
    inputs, info = preprocess_image(tf.constant(image), InputConfig(**TORCHVISION_INPUT))
    assert tuple(inputs.shape[:2]) == (800, 1184) and tuple(info.numpy()[:2]) == tuple(stored["e2e_image_size"])
    worst = float(np.abs(inputs.numpy()[::7, ::7] - stored["e2e_input_every_7th"]).max())
    print(f"input transform: max |delta| {worst:.1e} (normalised units)")
    assert worst <= 1e-4


def test_end_to_end_equals_torchvisions(detector_reference, tmp_path):
    """``infer --model mask-rcnn-torchvision --pretrained-from-file coco.npz`` on the
    416 x 608 image: torchvision's ``model([image])`` resizes it to 800 x 1169, pads to 800 x 1184, and
    returns 100 detections in original pixels. Same count, boxes <= 0.5 px, scores <= 1e-4, identical
    labels, mask IoU >= 0.98 per detection except where torchvision's own paste is discontinuous: it
    truncates the expanded box to integers, so a box edge within float noise of an integer moves the
    whole mask by a pixel (those are counted and printed, at most 2)."""
    from pycocotools import mask as mask_utils

    from common.command import cli
    from mrcnn_tf2.family import FAMILY
    from mrcnn_tf2.inference import Detector
    from mrcnn_tf2.ops.paste_masks import torchvision_paste_boxes

    _, stored, state, image = detector_reference
    weights = str(tmp_path / "coco.npz")
    np.savez(weights, **state)
    experiment = cli.parse(["infer", "--model", "mask-rcnn-torchvision", "--pretrained-from-file", weights,
                            "x.png"]).experiment
    experiment = FAMILY.prepare(experiment, "infer")  # resolved once, as main.py infer does
    inputs, data = FAMILY._inputs(experiment), experiment.data
    assert (inputs.image_size, inputs.pad_multiple, inputs.per_image_canvas) == ((800, 1333), 32, True)
    detector = Detector(FAMILY.load_model(experiment, None), inputs, list(data.class_names), list(data.category_ids))
    out = detector.detect(image)

    boxes, theirs_boxes = out["boxes"][:, [1, 0, 3, 2]], stored["e2e_boxes"]
    assert len(boxes) == len(theirs_boxes) == 100
    np.testing.assert_array_equal(out["category_ids"], stored["e2e_labels"])  # COCO ids: torchvision's labels
    box_delta = float(np.abs(boxes - theirs_boxes).max())
    score_delta = float(np.abs(out["scores"] - stored["e2e_scores"]).max())
    height, width = image.shape[:2]
    theirs = mask_utils.decode([{"size": [height, width], "counts": c.encode()}
                                for c in stored["e2e_mask_rle_counts"]]).transpose(2, 0, 1).astype(bool)
    ours = out["masks"].astype(bool)
    union = np.logical_or(ours, theirs).sum((1, 2))
    iou = np.where(union > 0, np.logical_and(ours, theirs).sum((1, 2)) / np.maximum(union, 1), 1.0)
    boundary = np.any(torchvision_paste_boxes(out["boxes"]) != torchvision_paste_boxes(_yxyx(theirs_boxes)), axis=-1)
    print(f"end to end: {len(boxes)} detections (torchvision {len(theirs_boxes)}), max |box delta| {box_delta:.1e} px, "
          f"max |score delta| {score_delta:.1e}, mask IoU min {iou[~boundary].min():.4f} "
          f"({int(boundary.sum())} on a paste rounding boundary: IoU {np.round(iou[boundary], 3).tolist()})")
    assert box_delta <= 0.5 and score_delta <= 1e-4
    assert iou[~boundary].min() >= 0.98
    assert boundary.sum() <= 2 and (iou[boundary] >= 0.5).all()


def test_preset_flag_sets_model_and_input_fields():
    """``--preset torchvision`` is config fields only (those of ``mask-rcnn-torchvision``); ``--image-size`` still
    wins; ``nvidia`` is the default."""
    from common.command import cli
    from mrcnn_tf2.config import TORCHVISION_ANCHORS, TORCHVISION_FILTERS, MaskRCNNConfig
    from mrcnn_tf2.family import FAMILY

    def resolved(*flags):
        experiment = cli.parse(["info", "--model", "mask-rcnn", *flags]).experiment
        return FAMILY._resolve(experiment, None), FAMILY._inputs(experiment)

    experiment, inputs = resolved("--preset", "torchvision")
    named = cli.parse(["info", "--model", "mask-rcnn-torchvision"]).experiment
    assert FAMILY._resolve(named, None).task == experiment.task and FAMILY._inputs(named) == inputs
    model = experiment.task.model
    assert experiment.task.preset == "torchvision" and model.image_size == (800, 1344)
    assert (inputs.image_size, inputs.size_rounding, inputs.box_scaling) == ((800, 1333), "floor", "per_axis")
    assert all(getattr(model.anchors, k) == v for k, v in TORCHVISION_ANCHORS.items())
    assert (model.rpn.min_size, model.detection.mask_paste) == (TORCHVISION_FILTERS["rpn.min_size"], "torchvision")
    assert (model.backbone.stride_in_1x1, model.backbone.bn_epsilon) == (False, 1e-5)

    experiment, inputs = resolved("--preset", "torchvision", "--image-size", "512x768")
    assert inputs.image_size == (512, 768) and experiment.task.model.image_size == (512, 768)

    experiment, inputs = resolved()
    default = MaskRCNNConfig()
    assert experiment.task.preset == "nvidia" and inputs.image_size == (832, 1344) and inputs.size_rounding == "round"
    assert experiment.task.model.anchors == default.anchors and experiment.task.model.detection == default.detection

    with pytest.raises(SystemExit, match="coco.npz is a torchvision Mask R-CNN state_dict: run it with --model "
                                         "mask-rcnn-torchvision"):
        resolved("--preset", "nvidia", "--pretrained-from-file", "coco.npz")  # a file never chooses the preset
    with pytest.raises(SystemExit, match="--preset"):
        cli.parse(["info", "--model", "mask-rcnn", "--preset", "detectron2"])


def test_infer_mask_rcnn_pretrained_end_to_end_through_a_local_server(detector_reference, tmp_path, monkeypatch,
                                                                      capsys):
    """``main.py infer --model mask-rcnn --pretrained photos/``: the registered COCO weights (here the fixture's
    full-size torchvision state, served on 127.0.0.1 through the mirror setting) are fetched, the torchvision preset
    they need is set, and the detections equal torchvision's (the same 100 as the test above)."""
    import json as json_lib

    from PIL import Image

    import main as entry
    from weights_server import serve_state_as

    _, stored, state, image = detector_reference
    server = serve_state_as(monkeypatch, tmp_path / "home", "torchvision-maskrcnn-resnet50-fpn-coco", state)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(image).save(photos / "street.png")
    try:
        assert entry.main(["infer", "--model", "mask-rcnn", "--pretrained", str(photos), "--output-dir",
                           str(tmp_path / "out"), "--workspace", str(tmp_path / "ws")]) == 0
        from mrcnn_tf2 import Detector  # the Python API: torchvision's name for the weights, cached (no request)

        api = Detector.from_pretrained("maskrcnn_resnet50_fpn_coco").detect(image)
    finally:
        server.close()
    assert len(server.requests) == 1
    np.testing.assert_array_equal(api["category_ids"], stored["e2e_labels"])
    assert "predictions" in capsys.readouterr().out
    written = [f for f in os.listdir(tmp_path / "out") if f.endswith(".json")]
    with open(tmp_path / "out" / written[0]) as handle:
        predictions = json_lib.load(handle)
    assert len(predictions) == len(stored["e2e_labels"]) == 100
    assert sorted(p["category_id"] for p in predictions) == sorted(stored["e2e_labels"].tolist())
