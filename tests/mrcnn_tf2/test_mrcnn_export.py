"""export: SavedModel signatures equal the Keras path; original coordinates, masks, labels."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from mrcnn_tf2 import export
from mrcnn_tf2.data.inputs import InputConfig
from mrcnn_tf2.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf2.testing import tiny_config

NAMES, IDS = ["background", "cat", "dog"], [0, 17, 18]
TINY = tiny_config(**{"detection.score_threshold": 0.0})
D = 10
INPUT = InputConfig(image_size=(96, 128))  # padded to 128 x 128


def make_images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (100, 150, 3), dtype=np.uint8),
            rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = MaskRCNN(TINY, seed=0)
    export_dir = export.export_saved_model(model, str(tmp_path_factory.mktemp("export") / "model"), INPUT,
                                           NAMES, IDS)
    return model, export_dir, tf.saved_model.load(export_dir)


def run(loaded, signature, **inputs):
    return {k: v.numpy() for k, v in loaded.signatures[signature](**inputs).items()}


def test_serving_default_outputs_in_original_coordinates(exported):
    _, _, loaded = exported
    out = run(loaded, "serving_default", images=tf.constant(make_images()[0][None]))
    assert {k: v.shape for k, v in out.items()} == {
        "num_detections": (1,), "detection_boxes": (1, D, 4), "detection_classes": (1, D),
        "detection_class_names": (1, D), "detection_scores": (1, D), "detection_masks": (1, D, 100, 150)}
    assert out["detection_masks"].dtype == np.uint8 and set(np.unique(out["detection_masks"])) <= {0, 1}
    num = int(out["num_detections"][0])
    assert num > 0
    boxes = out["detection_boxes"][0, :num]
    assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= 100) and np.all(boxes[:, [1, 3]] <= 150)
    assert np.all(boxes[:, 2:] >= boxes[:, :2])
    assert out["detection_masks"][0, :num].any()


def test_class_ids_names_and_labels_file(exported):
    _, export_dir, loaded = exported
    out = run(loaded, "serving_default", images=tf.constant(make_images()[0][None]))
    num = int(out["num_detections"][0])
    ids, names = out["detection_classes"][0], out["detection_class_names"][0]
    assert set(ids[:num]) <= {17, 18} and not ids[num:].any()
    assert [n.decode() for n in names[:num]] == [NAMES[IDS.index(i)] for i in ids[:num]]
    assert all(n == b"" for n in names[num:])
    with open(os.path.join(export_dir, export.LABELS_FILE)) as f:
        assert json.load(f) == {"17": "cat", "18": "dog"}


def test_image_bytes_pads_masks_to_largest_image(exported):
    _, _, loaded = exported
    images = make_images()
    encoded = tf.constant([tf.io.encode_png(image).numpy() for image in images])
    out = run(loaded, "serving_bytes", image_bytes=encoded)
    assert out["detection_masks"].shape == (2, D, 100, 150)
    assert not out["detection_masks"][1, :, 90:].any() and not out["detection_masks"][1, :, :, 70:].any()
    num = int(out["num_detections"][1])
    boxes = out["detection_boxes"][1, :num]
    assert num > 0 and np.all(boxes[:, [0, 2]] <= 90) and np.all(boxes[:, [1, 3]] <= 70)


def test_image_bytes_flags_an_unusable_image_and_serves_the_others(exported):
    _, _, loaded = exported
    images = make_images()
    good = [tf.io.encode_png(image).numpy() for image in images]
    alone = run(loaded, "serving_bytes", image_bytes=tf.constant(good))
    mixed = run(loaded, "serving_bytes", image_bytes=tf.constant([good[0], good[1][:100], b"not an image"]))
    assert mixed["valid"].tolist() == [True, False, False] and alone["valid"].tolist() == [True, True]
    assert mixed["num_detections"].tolist() == [alone["num_detections"][0], 0, 0]
    np.testing.assert_allclose(mixed["detection_boxes"][0], alone["detection_boxes"][0], atol=1e-3)
    assert not mixed["detection_scores"][1:].any() and not mixed["detection_masks"][1:].any()


def test_both_signatures_equal_keras_path(exported):
    model, export_dir, _ = exported
    delta = export.verify_export(model, export_dir, make_images(), INPUT, NAMES, IDS)
    assert 0.0 <= delta < 1e-3


def test_verify_export_reports_a_mismatch(exported):
    model, export_dir, _ = exported
    with pytest.raises(export.ExportVerificationError, match="detection_class_names"):
        export.verify_export(model, export_dir, make_images()[:1], INPUT, ["background", "x", "y"], IDS)


def test_export_refuses_to_overwrite_and_leaves_no_temp_dirs(exported):
    model, export_dir, _ = exported
    with pytest.raises(FileExistsError, match="model"):
        export.export_saved_model(model, export_dir, INPUT, NAMES, IDS)
    assert os.listdir(os.path.dirname(export_dir)) == ["model"]


def test_check_labels_errors():
    with pytest.raises(ValueError, match="Need 3 class_names"):
        export.check_labels(["background", "cat"], [0, 17], 3)
    with pytest.raises(ValueError, match="start with 0"):
        export.check_labels(NAMES, [1, 17, 18], 3)


def test_original_boxes_divide_by_scale_and_clip():
    boxes = tf.constant([[[10.0, 20.0, 50.0, 200.0]]])
    info = tf.constant([[40.0, 100.0, 0.5, 80.0, 200.0]])
    unclipped, clipped = export.original_boxes(boxes, info)
    np.testing.assert_allclose(unclipped.numpy(), [[[20, 40, 100, 400]]])
    np.testing.assert_allclose(clipped.numpy(), [[[20, 40, 80, 200]]])


def test_paste_batch_masks_canvas_and_count():
    masks = tf.ones([2, 3, 28, 28])
    boxes = tf.constant([[[0.0, 0.0, 4.0, 4.0]] * 3, [[1.0, 1.0, 3.0, 3.0]] * 3])
    info = tf.constant([[6.0, 8.0, 1.0, 6.0, 8.0], [4.0, 5.0, 1.0, 4.0, 5.0]])
    pasted = export.paste_batch_masks(masks, boxes, tf.constant([1, 2]), info, [6, 8]).numpy()
    assert pasted.shape == (2, 3, 6, 8) and pasted.dtype == np.uint8
    np.testing.assert_array_equal(pasted[0, 0, :4, :4], 1)
    assert pasted[0, 0].sum() == 16 and not pasted[0, 1:].any()  # slots after num_detections stay 0
    assert pasted[1, 1].sum() == 4 and not pasted[1, 2].any()


def _one_detection(box, x0):
    mask = np.zeros((1, 1, 40, 40), np.uint8)
    mask[0, 0, 10:20, x0:x0 + 10] = 1
    return {"num_detections": np.array([1]), "detection_classes": np.array([[1]]),
            "detection_class_names": np.array([[b"a"]]), "detection_scores": np.array([[0.9]], np.float32),
            "detection_boxes": np.array([[box]], np.float32), "detection_masks": mask}


def test_compare_leaves_out_masks_on_a_torchvision_paste_rounding_boundary(capsys):
    """Boxes 6e-4 px apart whose expanded edge straddles x = 387 (torchvision truncates it): the mask
    moves by 1 px. torchvision mode names and skips it; the continuous paste has no such boundary."""
    from mrcnn_tf2.ops.paste_masks import torchvision_paste_boxes

    want, got = _one_detection([123.0846, 388.11945, 137.4823, 419.46643], 10), \
        _one_detection([123.0846, 388.12012, 137.4823, 419.4664], 11)
    assert torchvision_paste_boxes(want["detection_boxes"])[0, 0, 1] == 386
    assert torchvision_paste_boxes(got["detection_boxes"])[0, 0, 1] == 387
    assert export._compare("x", got, want, 1e-3, "torchvision") <= 1e-3
    assert "1 mask(s) on a paste rounding boundary" in capsys.readouterr().out
    with pytest.raises(export.ExportVerificationError, match="detection_masks"):
        export._compare("x", got, want, 1e-3, "continuous")
    got["detection_boxes"] = want["detection_boxes"]  # same paste box: a moved mask is a real difference
    with pytest.raises(export.ExportVerificationError, match="detection_masks"):
        export._compare("x", got, want, 1e-3, "torchvision")
