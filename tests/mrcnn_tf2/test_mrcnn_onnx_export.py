"""onnx_export: Mask R-CNN -> ONNX (pasted and raw masks) runs in onnxruntime like the Keras model.

The trained model (0, 1 and many objects, through ``main.py export --format onnx --verify``) is
checked in ``test_convergence.py``, which trains one; here the tiny random-weight config with
score threshold 0 (every one of its D slots is a detection).
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

pytest.importorskip("onnxruntime", reason="the onnx extra (tf2onnx, onnx, onnxruntime) is not installed")

import onnx  # noqa: E402

from mrcnn_tf2 import onnx_export  # noqa: E402
from mrcnn_tf2.data.inputs import InputConfig  # noqa: E402
from mrcnn_tf2.modeling.mask_rcnn import MaskRCNN  # noqa: E402
from mrcnn_tf2.testing import tiny_config  # noqa: E402

NAMES, IDS = ["background", "cat", "dog"], [0, 17, 18]
TINY = tiny_config(**{"detection.score_threshold": 0.0})
D = TINY.detection.max_detections
INPUT = InputConfig(image_size=(96, 128))
STATIC_HW = (100, 150)


def make_images():
    """Two 100x150 images (one batch of 2) and a 90x70 one."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (100, 150, 3), dtype=np.uint8), rng.integers(0, 256, (100, 150, 3), dtype=np.uint8),
            rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return MaskRCNN(TINY, seed=0)


@pytest.fixture(scope="module")
def pasted(model, tmp_path_factory):
    return onnx_export.export_onnx(model, str(tmp_path_factory.mktemp("onnx") / "pasted.onnx"), INPUT, NAMES, IDS)


@pytest.fixture(scope="module")
def raw_static(model, tmp_path_factory):
    return onnx_export.export_onnx(model, str(tmp_path_factory.mktemp("onnx") / "raw.onnx"), INPUT, NAMES, IDS,
                                   masks="raw", image_hw=STATIC_HW)


def test_pasted_outputs_match_keras_at_batch_1_and_2(model, pasted):
    stats = onnx_export.verify_onnx(model, pasted, make_images(), INPUT, NAMES, IDS)
    assert stats["batches"] == 4  # three alone, the two 100x150 together
    assert stats["detections"] == 5 * D
    assert stats["max_box_px"] <= onnx_export.BOX_TOLERANCE and stats["max_score"] <= onnx_export.SCORE_TOLERANCE
    assert stats["min_mask_iou"] >= onnx_export.MIN_MASK_IOU


def test_pasted_graph_contract(pasted):
    proto = onnx.load(pasted)
    onnx.checker.check_model(proto)
    assert [o.name for o in proto.graph.output] == list(onnx_export.OUTPUTS["pasted"])
    assert proto.graph.input[0].name == "images" and proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    ops = {node.op_type for node in proto.graph.node}
    assert "NonMaxSuppression" in ops and not ops & {"CombinedNonMaxSuppression", "CropAndResize"}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["masks"] == "pasted" and '"17": "cat"' in meta["labels"]
    assert all(a.s != b"tf_half_pixel_for_nn" for n in proto.graph.node for a in n.attribute)


def test_pasted_masks_are_uint8_on_the_image_and_padding_is_zero(pasted):
    from common.io import onnx_runtime

    out = onnx_export.run_onnx(onnx_runtime.make_session(pasted), make_images()[2][None])
    assert out["detection_masks"].shape == (1, D, 90, 70) and out["detection_masks"].dtype == np.uint8
    assert out["num_detections"].tolist() == [D] and set(out["detection_classes"][0]) <= {17, 18}
    boxes = out["detection_boxes"][0]
    assert np.all(boxes[:, [0, 2]] <= 90) and np.all(boxes[:, [1, 3]] <= 70) and np.all(boxes >= 0)


def test_raw_static_export_passes_strict_shape_inference(raw_static):
    proto = onnx.shape_inference.infer_shapes(onnx.load(raw_static), check_type=True, strict_mode=True)
    dims = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim][1:] == [*STATIC_HW, 3]
    assert dims["detection_mask_logits"][1:] == [D, 28, 28] and dims["detection_mask_boxes"][1:] == [D, 4]


def test_raw_outputs_match_keras_at_batch_1_and_2(model, raw_static):
    images = [image for image in make_images() if image.shape[:2] == STATIC_HW]
    stats = onnx_export.verify_onnx(model, raw_static, images, INPUT, NAMES, IDS, masks="raw")
    assert stats["batches"] == 3 and stats["detections"] == 4 * D and stats["min_mask_iou"] >= onnx_export.MIN_MASK_IOU


def test_raw_logits_paste_to_the_pasted_masks(model):
    """raw = the pasted output before pasting: sigmoid(logits) pasted into mask_boxes gives detection_masks."""
    from mrcnn_tf2.export import DetectionModule
    from mrcnn_tf2.ops.paste_masks import paste_masks_numpy

    module = DetectionModule(model, INPUT, NAMES, IDS)
    image = tf.constant(make_images()[:1])
    raw = {k: v.numpy() for k, v in onnx_export.export_outputs(module, image, "raw").items()}
    pasted = {k: v.numpy() for k, v in onnx_export.export_outputs(module, image, "pasted").items()}
    num = int(raw["num_detections"][0])
    masks = paste_masks_numpy(tf.sigmoid(raw["detection_mask_logits"][0, :num]).numpy(),
                              raw["detection_mask_boxes"][0, :num], STATIC_HW, threshold=0.5)
    np.testing.assert_array_equal(masks, pasted["detection_masks"][0, :num])


def _outputs(num=(2,), classes=((17, 18),), box=0.0, score=0.0, mask_pixels=0):
    masks = np.zeros((1, 2, 8, 8), np.uint8)
    masks[:, :, :4, :4] = 1
    masks[0, 0, 4, :mask_pixels] = 1
    return {"num_detections": np.array(num, np.int32), "detection_classes": np.array(classes, np.int32),
            "detection_boxes": np.full((1, 2, 4), 10.0 + box, np.float32),
            "detection_scores": np.array([[0.9 + score, 0.8]], np.float32), "detection_masks": masks}


def test_compare_accepts_an_image_without_detections():
    empty = {**_outputs(num=(0,)), "detection_masks": np.zeros((1, 2, 8, 8), np.uint8)}
    assert onnx_export.compare(empty, empty, "t") == {"detections": 0, "max_box_px": 0.0, "max_score": 0.0,
                                                      "min_mask_iou": 1.0}


@pytest.mark.parametrize("change, message", [
    (dict(num=(1,)), "num_detections"), (dict(classes=((17, 17),)), "classes"), (dict(box=0.6), "boxes"),
    (dict(score=1e-3), "scores"), (dict(mask_pixels=4), "mask IoU")])
def test_compare_fails_past_each_tolerance(change, message):
    assert onnx_export.compare(_outputs(box=0.4, score=5e-5), _outputs(), "t")["detections"] == 2
    with pytest.raises(onnx_export.OnnxVerificationError, match=message):
        onnx_export.compare(_outputs(**change), _outputs(), "t")


def test_export_rejects_old_opsets_and_unknown_mask_modes(model, tmp_path):
    with pytest.raises(ValueError, match="opset"):
        onnx_export.export_onnx(model, str(tmp_path / "m.onnx"), INPUT, NAMES, IDS, opset=13)
    with pytest.raises(ValueError, match="masks"):
        onnx_export.export_onnx(model, str(tmp_path / "m.onnx"), INPUT, NAMES, IDS, masks="rle")
