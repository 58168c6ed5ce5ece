"""Writes the torchvision parity fixtures of ``tests/fixtures/torchvision/`` (needs torch + torchvision).

Run where PyTorch is installed (not in CI; ``pip install torch torchvision`` in a separate venv)::

    python scripts/make_torchvision_fixture.py --out tests/fixtures/torchvision

``resnet50``: torchvision's ``resnet50(weights=None)`` (the ImageNet checkpoint's layout) gets
seeded random weights from :func:`mrcnn_tf2.testing.random_torch_weights` (the tests re-create
them without torch), its BatchNorm statistics are calibrated on one image (a forward pass with
momentum 1, so activations stay O(1) through 50 layers instead of exploding), and its C2-C5
outputs on that image are stored for a few channels. Stored: ``resnet50.json`` (seed, weight
shapes, stored channels) and ``resnet50.npz`` (the uint8 image, the calibrated running
statistics, the reference features ``c2``..``c5`` as ``[H_l, W_l, k]``).

``detector``: ``MaskRCNN(resnet_fpn_backbone("resnet50", weights=None, norm_layer=FrozenBatchNorm2d), 91)``
(the COCO checkpoint's layout), random weights the same way (seed + 1), FrozenBatchNorm statistics
calibrated on the image (each set to its input's per-channel mean and variance, in forward order),
then the outputs of the stages that are plain functions of their inputs: FPN P2-P6 (a few channels),
RPN objectness and deltas per level on the image, the test-time RPN proposals (boxes ``(x1, y1, x2, y2)``
and scores) of the image, the end-to-end ``model([image])`` outputs (its transform resizes to 800 x 1169
and pads to 800 x 1184), and the box head (logits, deltas) and mask head
(a few classes' logits) on seeded random RoI features (re-created by the test). Stored:
``detector.json`` and ``detector.npz``.

``anchors``: torchvision's ``AnchorGenerator`` (sizes 32..512, ratios 0.5/1/2) on an 800 x 1184
batch, every 97th anchor of each level (``anchors.npz``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mrcnn_tf2.testing import random_torch_weights  # noqa: E402  (needs ROOT on the path)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGE_SIZE = (416, 608)
CHANNELS_KEPT = 8
SEED = 1234


def fixture_image(seed: int = 0) -> np.ndarray:
    """``[416, 608, 3] uint8``: coloured shapes on a noisy background (the project's synthetic renderer)."""
    from dataset.make_synthetic_shapes import render

    image, _ = render(np.random.default_rng(seed), *IMAGE_SIZE, num_shapes=6)
    return image


def normalized(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3] uint8`` -> ``[H, W, 3] float32``: torchvision's ``(x / 255 - mean) / std``."""
    return ((image.astype(np.float32) / 255.0 - np.float32(MEAN)) / np.float32(STD)).astype(np.float32)


def _is_drawn(key: str) -> bool:
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def _calibrate(model, torch, batch) -> None:
    """Running statistics := the batch statistics of one forward pass, layer after layer."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()


def resnet50_fixture(out_dir: str, seed: int = SEED) -> None:
    import torch
    import torchvision

    model = torchvision.models.resnet50(weights=None)
    state = model.state_dict()
    shapes = {k: list(v.shape) for k, v in state.items() if _is_drawn(k) and not k.startswith("fc.")}
    drawn = random_torch_weights(shapes, seed)
    model.load_state_dict({**state, **{k: torch.from_numpy(v) for k, v in drawn.items()}})
    image = fixture_image()
    batch = torch.from_numpy(normalized(image)).permute(2, 0, 1)[None]
    _calibrate(model, torch, batch)
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(batch))))
        features = {}
        for level, stage in zip(range(2, 6), (model.layer1, model.layer2, model.layer3, model.layer4)):
            x = stage(x)
            features[level] = x[0].permute(1, 2, 0).numpy()
    channels = {level: np.linspace(0, f.shape[-1] - 1, CHANNELS_KEPT).round().astype(int).tolist()
                for level, f in features.items()}
    stats = {k: v.numpy() for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    arrays = {"image": image, **stats, **{f"c{l}": features[l][..., channels[l]] for l in features}}
    np.savez_compressed(os.path.join(out_dir, "resnet50.npz"), **arrays)
    with open(os.path.join(out_dir, "resnet50.json"), "w") as f:
        json.dump({"seed": seed, "shapes": shapes, "channels": channels, "torch": torch.__version__,
                   "torchvision": torchvision.__version__}, f, indent=0)
    for level, f in features.items():
        print(f"C{level}: {f.shape}, |x| mean {np.abs(f).mean():.3f}, max {np.abs(f).max():.2f}")


ROI_SEED, NUM_ROIS = 99, 8
# Random He-normal objectness and class weights give logits up to ~50: sigmoid / softmax saturate to
# 1.0 and ties make torchvision's NMS order arbitrary; random box-regression weights give deltas up to
# ~70 (trained: ~1), so most boxes hit the exp clamp and the image border, where float noise decides
# NMS. Scaled down, logits and deltas stay within a trained model's range.
SCALED = {"rpn.head.cls_logits.weight": 0.1, "roi_heads.box_predictor.cls_score.weight": 0.1,
          "rpn.head.bbox_pred.weight": 0.05, "roi_heads.box_predictor.bbox_pred.weight": 0.1}
MASK_CLASSES = (1, 17, 44, 90)


def roi_features(size: int, seed: int = ROI_SEED) -> np.ndarray:
    """``[NUM_ROIS, 256, size, size] float32`` seeded RoI features (the test re-creates them)."""
    return np.random.default_rng(seed + size).normal(0.0, 1.0, (NUM_ROIS, 256, size, size)).astype(np.float32)


def _calibrate_frozen(model, torch, batch) -> None:
    """Each FrozenBatchNorm2d's statistics := its input's per-channel mean / variance, in forward order."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    def hook(module, inputs):
        x = inputs[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    with torch.no_grad():
        model.backbone.body(batch)
    for handle in handles:
        handle.remove()


def _rpn_proposals(rpn, batch, features, objectness, deltas):
    """torchvision's test-time proposals of the image (RegionProposalNetwork.forward without the losses)."""
    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.rpn import concat_box_prediction_layers

    images = ImageList(batch, [tuple(batch.shape[-2:])])
    anchors = rpn.anchor_generator(images, features)
    per_level = [o[0].numel() for o in objectness]
    flat_scores, flat_deltas = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(flat_deltas, anchors).view(1, -1, 4)
    boxes, scores = rpn.filter_proposals(proposals, flat_scores, images.image_sizes, per_level)
    print(f"RPN: {len(boxes[0])} proposals, scores {float(scores[0].min()):.3f}..{float(scores[0].max()):.3f}")
    return boxes[0].numpy(), scores[0].numpy()


def _detections(model, batch, features, proposals):
    """Box head on torchvision's proposals, its detections, their 28x28 mask probabilities and pasted masks."""
    from collections import OrderedDict

    from pycocotools import mask as mask_utils
    from torchvision.models.detection.roi_heads import maskrcnn_inference, paste_masks_in_image

    heads, size = model.roi_heads, [tuple(batch.shape[-2:])]
    named = OrderedDict((str(i), f) for i, f in enumerate(features[:4]))
    named["pool"] = features[4]
    class_logits, box_deltas = heads.box_predictor(heads.box_head(heads.box_roi_pool(named, [proposals], size)))
    boxes, scores, labels = heads.postprocess_detections(class_logits, box_deltas, [proposals], size)
    mask_logits = heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(named, boxes, size)))
    probabilities = maskrcnn_inference(mask_logits, labels)[0]  # [D, 1, 28, 28]
    pasted = paste_masks_in_image(probabilities, boxes[0], size[0], padding=1)[:, 0] > 0.5  # [D, H, W]
    rles = mask_utils.encode(np.asfortranarray(pasted.numpy().transpose(1, 2, 0).astype(np.uint8)))
    print(f"detections: {len(boxes[0])}, scores {float(scores[0].min()):.3f}..{float(scores[0].max()):.3f}, "
          f"{len(set(labels[0].tolist()))} classes")
    kept = list(MASK_CLASSES)
    return {"head_logits": class_logits.numpy(),
            "head_deltas": box_deltas.view(len(proposals), -1, 4)[:, kept].reshape(len(proposals), -1).numpy(),
            "detection_boxes": boxes[0].numpy(), "detection_scores": scores[0].numpy(),
            "detection_labels": labels[0].numpy(), "mask_probabilities": probabilities[:, 0].numpy(),
            "mask_rle_counts": np.array([r["counts"] for r in rles], dtype=object).astype(str)}


def _end_to_end(model, image):
    """``model([image / 255])``: torchvision's transform (resize to 800, pad to 32), network, postprocess."""
    import torch
    from pycocotools import mask as mask_utils

    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    images, _ = model.transform([tensor])
    features = model.backbone(images.tensors)
    proposals, _ = model.rpn(images, features)
    out = model([tensor])[0]
    masks = (out["masks"][:, 0] > 0.5).numpy()
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    print(f"end to end: {len(out['boxes'])} detections on the {image.shape[0]}x{image.shape[1]} image")
    sample = images.tensors[0].permute(1, 2, 0)[::7, ::7].numpy()  # every 7th pixel of the network input
    return {"e2e_input_every_7th": sample, "e2e_image_size": np.array(images.image_sizes[0]),
            "e2e_proposals": proposals[0].numpy(), "e2e_boxes": out["boxes"].numpy(), "e2e_scores": out["scores"].numpy(), "e2e_labels": out["labels"].numpy(),
            "e2e_mask_rle_counts": np.array([r["counts"] for r in rles], dtype=object).astype(str)}


def detector_fixture(out_dir: str, seed: int = SEED + 1) -> None:
    import torch
    import torchvision
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.misc import FrozenBatchNorm2d

    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d)
    model = MaskRCNN(backbone, num_classes=91).eval()
    state = model.state_dict()
    shapes = {k: list(v.shape) for k, v in state.items() if _is_drawn(k)}
    drawn = random_torch_weights(shapes, seed)
    for key, factor in SCALED.items():
        drawn[key] = drawn[key] * np.float32(factor)
    model.load_state_dict({**state, **{k: torch.from_numpy(v) for k, v in drawn.items()}})
    batch = torch.from_numpy(normalized(fixture_image())).permute(2, 0, 1)[None]
    _calibrate_frozen(model, torch, batch)
    arrays = {k: v.numpy() for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    with torch.no_grad():
        features = list(model.backbone(batch).values())  # P2..P6
        objectness, deltas = model.rpn.head(features)
        arrays["proposals"], arrays["proposal_scores"] = _rpn_proposals(model.rpn, batch, features, objectness,
                                                                        deltas)
        arrays.update(_detections(model, batch, features, torch.from_numpy(arrays["proposals"])))
        arrays.update(_end_to_end(model, fixture_image()))
        box_logits, box_deltas = model.roi_heads.box_predictor(model.roi_heads.box_head(
            torch.from_numpy(roi_features(7))))
        mask_logits = model.roi_heads.mask_predictor(model.roi_heads.mask_head(torch.from_numpy(roi_features(14))))
    channels = np.linspace(0, 255, CHANNELS_KEPT).round().astype(int).tolist()
    for level, (p, o, d) in enumerate(zip(features, objectness, deltas), start=2):
        arrays[f"p{level}"] = p[0].permute(1, 2, 0).numpy()[..., channels]
        arrays[f"rpn_scores_{level}"] = o[0].permute(1, 2, 0).numpy()
        arrays[f"rpn_deltas_{level}"] = d[0].permute(1, 2, 0).numpy()
        print(f"P{level}: {tuple(p.shape)}, |P| mean {p.abs().mean():.3f}; objectness |x| max {o.abs().max():.2f}")
    arrays.update(box_logits=box_logits.numpy(), box_deltas=box_deltas.numpy(),
                  mask_logits=mask_logits[:, list(MASK_CLASSES)].permute(0, 2, 3, 1).numpy())
    print(f"box logits |x| max {box_logits.abs().max():.2f}, mask logits |x| max {mask_logits.abs().max():.2f}")
    np.savez_compressed(os.path.join(out_dir, "detector.npz"), **arrays)
    with open(os.path.join(out_dir, "detector.json"), "w") as f:
        json.dump({"seed": seed, "shapes": shapes, "scaled": SCALED, "channels": channels, "roi_seed": ROI_SEED,
                   "num_rois": NUM_ROIS, "mask_classes": list(MASK_CLASSES), "torch": torch.__version__,
                   "torchvision": torchvision.__version__}, f, indent=0)


ANCHOR_IMAGE_SIZE, ANCHOR_EVERY = (800, 1184), 97


def anchors_fixture(out_dir: str) -> None:
    """torchvision's RPN anchors for an 800 x 1184 batch (every 97th of each level) -> ``anchors.npz``."""
    import torch
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    generator = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
    height, width = ANCHOR_IMAGE_SIZE
    sizes = [(-(-height // 2 ** l), -(-width // 2 ** l)) for l in range(2, 6)]
    sizes.append(((sizes[-1][0] - 1) // 2 + 1, (sizes[-1][1] - 1) // 2 + 1))  # P6 = max_pool(P5, 1, 2)
    features = [torch.zeros(1, 1, h, w) for h, w in sizes]
    images = ImageList(torch.zeros(1, 3, height, width), [(height, width)])
    anchors = generator(images, features)[0].numpy()  # [N, 4] (x1, y1, x2, y2), levels concatenated
    counts = [h * w * 3 for h, w in sizes]
    arrays, start = {}, 0
    for level, count in zip(range(2, 7), counts):
        arrays[f"anchors_{level}"] = anchors[start:start + count][::ANCHOR_EVERY]
        start += count
    np.savez_compressed(os.path.join(out_dir, "anchors.npz"), image_size=np.array(ANCHOR_IMAGE_SIZE),
                        every=np.array(ANCHOR_EVERY), counts=np.array(counts), **arrays)
    print(f"anchors: {len(anchors)} for {height}x{width}, P6 feature {sizes[-1]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "torchvision"))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    resnet50_fixture(args.out)
    detector_fixture(args.out)
    anchors_fixture(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
