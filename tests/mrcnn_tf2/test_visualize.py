"""visualize: size kept, masks tinted, background untouched, deterministic output, cross-class duplicates."""
import numpy as np
from PIL import Image

from mrcnn_tf2.visualize import class_color, draw_detections, drawn_detections, save_detections_png

NAMES = ["background", "cat", "dog"]


def scene():
    """A grey 40x60 image, one cat (mask rows 20..34, cols 30..54) and one weak dog."""
    image = np.full((40, 60, 3), 100, np.uint8)
    boxes = np.array([[20, 30, 35, 55], [0, 0, 10, 10]], np.float32)
    masks = np.zeros((2, 40, 60), np.float32)
    masks[0, 20:35, 30:55] = 0.9
    masks[1, 0:10, 0:10] = 1.0
    return image, boxes, np.array([1, 2]), np.array([0.93, 0.2]), masks


def test_size_tint_and_untouched_background():
    image, boxes, classes, scores, masks = scene()
    out = np.asarray(draw_detections(image, boxes, classes, scores, masks, NAMES))
    assert out.shape == image.shape and out.dtype == np.uint8
    expected = np.round(0.5 * 100 + 0.5 * np.array(class_color(1))).astype(np.uint8)
    np.testing.assert_array_equal(out[28, 42], expected)  # inside the mask, off the box
    np.testing.assert_array_equal(out[5, 5], image[5, 5])  # dog below score threshold
    np.testing.assert_array_equal(out[38:, :25], image[38:, :25])  # far from the cat


def test_box_outline_and_label_drawn():
    image, boxes, classes, scores, _ = scene()
    out = np.asarray(draw_detections(image, boxes, classes, scores, None, NAMES))
    np.testing.assert_array_equal(out[34, 42], class_color(1))  # bottom edge of the box
    assert (out[8:20, 30:55] != 100).any()  # label tag above the box
    np.testing.assert_array_equal(out[28, 42], image[28, 42])  # no mask drawn


def test_deterministic_and_png(tmp_path):
    args = scene()
    first = np.asarray(draw_detections(*args, NAMES))
    np.testing.assert_array_equal(first, np.asarray(draw_detections(*args, NAMES)))
    path = tmp_path / "detections.png"
    save_detections_png(str(path), *args, NAMES)
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), first)


def test_one_object_under_two_class_names_is_drawn_once():
    """The demo's case: a circle (0.94) also detected as a square (0.89) at IoU ~0.8, plus a separate shape."""
    boxes = np.array([[73, 50, 124, 90], [73, 46, 124, 96], [0, 79, 36, 118], [0, 0, 5, 5]], np.float32)
    scores = np.array([0.94, 0.89, 0.97, 0.3])
    assert drawn_detections(boxes, scores, 0.5, 0.5).tolist() == [2, 0]  # by score; duplicate and weak left out
    assert drawn_detections(boxes, scores, 0.5, 1.0).tolist() == [2, 0, 1]  # 1.0 draws every one above 0.5
    assert drawn_detections(boxes, scores, 0.99, 0.5).tolist() == []
    image = np.full((128, 128, 3), 100, np.uint8)
    classes = np.array([1, 2, 1, 2])
    once = np.asarray(draw_detections(image, boxes, classes, scores, None, NAMES, 0.5, 0.5))
    twice = np.asarray(draw_detections(image, boxes, classes, scores, None, NAMES, 0.5, 1.0))
    np.testing.assert_array_equal(once[123, 60], class_color(1))  # the circle's bottom edge
    assert (twice[123, 93] == class_color(2)).all() and not (once[123, 93] == class_color(2)).all()
