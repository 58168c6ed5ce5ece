"""SavedModel export of Mask R-CNN: uint8 / encoded-image serving signatures, verification.

Shape glossary
  B        images in a request
  H, W     original image size (``serving_default``: one size for the whole batch)
  Hc, Wc   mask canvas: ``(H, W)`` for ``serving_default``, the largest original height
           and width of the batch for ``serving_bytes`` (images may differ in size)
  Hp, Wp   fixed network input size, ``InputConfig.batch_padded_size()`` (static)
  D        detection slots per image (``detection.max_detections``); m mask side (28)
  K        classes including background

Size policy
  The model needs a static input size, so every request is resized (aspect kept) and
  zero-padded to ONE fixed ``(Hp, Wp)``: ``preprocess_image(..., padded_size=(Hp, Wp))``,
  the size used for training batches. An image whose aspect ratio differs from
  ``Hp:Wp`` is scaled down until it fits (e.g. a portrait photo in an 832 x 1344 canvas
  is limited by its height). One traced graph serves every image size.

Outputs of both signatures (:data:`OUTPUT_KEYS`)
  num_detections         ``[B] int32``
  detection_boxes        ``[B, D, 4] float32`` (ymin, xmin, ymax, xmax), ORIGINAL image
                         pixels (network boxes / scale, clipped to ``[0, H] x [0, W]``)
  detection_classes      ``[B, D] int32`` dataset category ids (``category_ids[class]``),
                         0 in padding
  detection_class_names  ``[B, D] string``, "" in padding
  detection_scores       ``[B, D] float32``, descending, 0 in padding
  detection_masks        ``[B, D, Hc, Wc] uint8`` 0/1: the 28 x 28 probabilities pasted
                         at original resolution (``paste_masks``, unclipped boxes), then
                         thresholded at 0.5; zero outside an image's own ``H x W``
  valid                  ``[B] bool``, ``serving_bytes`` only: False for an image that is not
                         a whole JPEG/PNG/GIF/BMP/WebP (:mod:`common.io.serving`); its outputs are
                         blank (0 detections) and the rest of the batch is served as usual

:func:`postprocess_detections` is the one implementation of "scaled network output ->
original boxes, ids, names and pasted masks"; the serving functions, ``verify_export``
and ``mrcnn_tf2.inference`` all call it.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from mrcnn_tf2.data.inputs import InputConfig
from common.io import saved_model
from common.io.serving import blank_invalid, decode_checked
from mrcnn_tf2.data.preprocessing import decode_image, preprocess_image
from mrcnn_tf2.evaluation import MASK_THRESHOLD
from mrcnn_tf2.ops import box_ops
from mrcnn_tf2.ops.paste_masks import paste, torchvision_paste_boxes

LABELS_FILE = "labels.json"
SIGNATURES = ("serving_default", "serving_bytes")
OUTPUT_KEYS = ("num_detections", "detection_boxes", "detection_classes",
               "detection_class_names", "detection_scores", "detection_masks")
DEFAULT_TOLERANCE = 1e-4


class ExportVerificationError(RuntimeError):
    """The reloaded SavedModel disagrees with the Keras model."""


def check_labels(class_names: Sequence[str], category_ids: Sequence[int], num_classes: int) -> None:
    """Validates the class index -> (name, dataset id) tables.

    Args:
      class_names: ``K`` names, index 0 background.
      category_ids: ``K`` dataset ids, ``[0] == 0``, unique.
      num_classes: ``K`` of the model.

    Raises:
      ValueError: wrong lengths, ``category_ids[0] != 0`` or repeated ids.
    """
    ids = [int(i) for i in category_ids]
    if len(class_names) != num_classes or len(ids) != num_classes:
        raise ValueError(f"Need {num_classes} class_names and category_ids (model num_classes, index 0 "
                         f"background). Received: {len(class_names)} names, {len(ids)} ids")
    if ids[0] != 0 or len(set(ids)) != len(ids):
        raise ValueError(f"category_ids must start with 0 (background) and be unique. Received: {ids}")


def padded_size_for(input_config: InputConfig, stride: int) -> Tuple[int, int]:
    """``(Hp, Wp)`` = ``input_config.batch_padded_size()``, checked to be multiples of ``stride``."""
    size = input_config.batch_padded_size()
    if any(s % stride for s in size):
        raise ValueError(f"The padded input size must be a multiple of {stride} (C5's stride). Received: "
                         f"InputConfig.batch_padded_size()={size}")
    return size


def preprocess_batch(images: tf.Tensor, input_config: InputConfig, padded_size: Tuple[int, int]):
    """Resizes, normalises and pads every image of a uint8 batch to the fixed size.

    Args:
      images: ``[B, H, W, 3] uint8``.
      input_config: resize targets and normalisation.
      padded_size: ``(Hp, Wp)`` python ints.

    Returns:
      (``[B, Hp, Wp, 3] float32`` network images, ``[B, 5] float32`` image_info).
    """
    spec = (tf.TensorSpec([*padded_size, 3], tf.float32), tf.TensorSpec([5], tf.float32))
    return tf.map_fn(lambda image: preprocess_image(image, input_config, padded_size), images,
                     fn_output_signature=spec)


def preprocess_encoded(image_bytes: tf.Tensor, input_config: InputConfig, padded_size: Tuple[int, int]):
    """Decodes JPEG/PNG strings (sizes may differ) and preprocesses them to the fixed size.

    Args:
      image_bytes: ``[B] string`` encoded images.
      input_config, padded_size: as in :func:`preprocess_batch`.

    Returns:
      (``[B, Hp, Wp, 3] float32``, ``[B, 5] float32`` image_info, ``[B] bool`` valid: the image
      passed :func:`common.io.serving.decode_checked`, else it is a 1x1 placeholder).
    """
    spec = (tf.TensorSpec([*padded_size, 3], tf.float32), tf.TensorSpec([5], tf.float32), tf.TensorSpec([], tf.bool))

    def prepare(data):
        image, valid = decode_checked(data, decode_image)
        return (*preprocess_image(image, input_config, padded_size), valid)

    return tf.map_fn(prepare, image_bytes, fn_output_signature=spec)


def original_hw(image_info: tf.Tensor) -> tf.Tensor:
    """``[B, 5]`` image_info -> ``[B, 2] int32`` original (H, W)."""
    return tf.cast(tf.round(image_info[:, 3:5]), tf.int32)


def original_boxes(boxes: tf.Tensor, image_info: tf.Tensor, box_scaling: str = "scale") -> Tuple[tf.Tensor, tf.Tensor]:
    """Network-input boxes -> original-image boxes.

    Args:
      boxes: ``[B, D, 4] float32`` pixels of the scaled image.
      image_info: ``[B, 5] float32`` (h, w, scale, H, W).
      box_scaling: ``scale`` (boxes / scale) or ``per_axis`` (y * H / h, x * W / w: torchvision).

    Returns:
      (``[B, D, 4] float32`` original boxes, the same clipped to ``[0, H] x [0, W]``).
    """
    if box_scaling == "per_axis":
        ratios = image_info[:, 3:5] / image_info[:, 0:2]  # [B, 2] (H / h, W / w)
        unclipped = boxes * tf.tile(ratios, [1, 2])[:, None, :]
    else:
        unclipped = box_ops.scale_boxes(boxes, 1.0 / image_info[:, 2, None, None])
    return unclipped, box_ops.clip_boxes(unclipped, image_info[:, None, 3:5])


def _paste_one(masks, boxes, num, image_hw, canvas_hw, mode) -> tf.Tensor:
    """Pastes the first ``num`` of ``[D, m, m]`` masks into ``image_hw``, zero-padded to ``[D, Hc, Wc] uint8``."""
    pasted = paste(masks[:num], boxes[:num], image_hw, mode, threshold=MASK_THRESHOLD)
    extra = tf.concat([[tf.shape(masks)[0] - num], canvas_hw - image_hw], axis=0)
    return tf.pad(pasted, tf.stack([tf.zeros_like(extra), extra], axis=1))


def paste_batch_masks(masks, boxes, num_detections, image_info, canvas_hw, mode: str = "continuous") -> tf.Tensor:
    """Pastes every image's masks at its original resolution on a common canvas.

    Args:
      masks: ``[B, D, m, m] float32`` probabilities inside each box.
      boxes: ``[B, D, 4] float32`` (unclipped) original-image boxes.
      num_detections: ``[B] int32``; slots after it stay 0.
      image_info: ``[B, 5] float32``.
      canvas_hw: ``[2] int32`` (Hc, Wc) >= every image's (H, W).
      mode: ``detection.mask_paste`` (``ops.paste_masks.PASTE_MODES``).

    Returns:
      ``[B, D, Hc, Wc] uint8`` 0/1 masks (threshold 0.5).
    """
    canvas_hw = tf.cast(canvas_hw, tf.int32)
    spec = tf.TensorSpec([masks.shape[1], None, None], tf.uint8)
    return tf.map_fn(lambda args: _paste_one(*args, canvas_hw, mode),
                     (masks, boxes, num_detections, original_hw(image_info)), fn_output_signature=spec)


def postprocess_detections(detections: Dict[str, tf.Tensor], image_info: tf.Tensor, canvas_hw,
                           category_ids: Sequence[int], class_names: Sequence[str],
                           mask_paste: str = "continuous", box_scaling: str = "scale") -> Dict[str, tf.Tensor]:
    """Model inference outputs -> the exported outputs (see the module docstring).

    Args:
      detections: ``MaskRCNN`` inference dict (scaled-image boxes, contiguous classes,
        ``[B, D, m, m]`` mask probabilities).
      image_info: ``[B, 5] float32`` rows used to preprocess the images.
      canvas_hw: ``[2] int`` (Hc, Wc) of the mask canvas.
      category_ids: ``K`` dataset ids by class index; class_names: ``K`` names.
      mask_paste: how masks are pasted (``detection.mask_paste``).
      box_scaling: ``InputConfig.box_scaling``.

    Returns:
      Dict with the :data:`OUTPUT_KEYS`.
    """
    out, unclipped = postprocess_boxes(detections, image_info, category_ids, class_names, box_scaling)
    masks = paste_batch_masks(detections["detection_masks"], unclipped, out["num_detections"], image_info,
                              canvas_hw, mask_paste)
    return {**out, "detection_masks": masks}


def postprocess_boxes(detections: Dict[str, tf.Tensor], image_info: tf.Tensor, category_ids: Sequence[int],
                      class_names: Sequence[str], box_scaling: str = "scale") -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
    """:func:`postprocess_detections` without the masks.

    Returns:
      (the :data:`OUTPUT_KEYS` but ``detection_masks``, ``[B, D, 4]`` unclipped original boxes, 0 in
      padding: where the masks are pasted).
    """
    num = tf.cast(detections["num_detections"], tf.int32)
    classes = detections["detection_classes"]
    valid = tf.range(tf.shape(classes)[1])[None] < num[:, None]
    unclipped, clipped = original_boxes(detections["detection_boxes"], image_info, box_scaling)
    ids = tf.gather(tf.constant([int(i) for i in category_ids], tf.int32), classes)
    names = tf.gather(tf.constant(list(class_names), tf.string), classes)
    return ({"num_detections": num,
             "detection_boxes": tf.where(valid[..., None], clipped, 0.0),
             "detection_classes": tf.where(valid, ids, 0),
             "detection_class_names": tf.where(valid, names, ""),
             "detection_scores": tf.where(valid, detections["detection_scores"], 0.0)},
            tf.where(valid[..., None], unclipped, 0.0))


class DetectionModule(tf.Module):
    """A MaskRCNN plus its input and label tables, with the two serving signatures.

    Args:
      model: a built or unbuilt ``MaskRCNN`` (built here on zeros if needed).
      input_config: resize / normalisation settings; ``batch_padded_size()`` is the
        fixed network input size (see "Size policy" in the module docstring).
      class_names: ``K`` names by contiguous class index (index 0 background).
      category_ids: ``K`` dataset category ids by class index (``[0] == 0``).
    """

    def __init__(self, model, input_config: InputConfig, class_names: Sequence[str],
                 category_ids: Sequence[int], name: str = "mask_rcnn_detection"):
        super().__init__(name=name)
        check_labels(class_names, category_ids, model.config.num_classes)
        self._model = saved_model.Untracked(model)
        self.input_config = input_config
        self.class_names = [str(n) for n in class_names]
        self.category_ids = [int(i) for i in category_ids]
        self.padded_size = padded_size_for(input_config, 2 ** min(model.config.anchors.max_level, 5))
        _ensure_built(model, self.padded_size)
        self.model_weights = list(model.weights)
        self._functions = saved_model.Untracked(self._make_functions())

    @property
    def model(self):
        """The wrapped ``MaskRCNN``."""
        return self._model.value

    def detect(self, images: tf.Tensor, image_info: tf.Tensor, canvas_hw) -> Dict[str, tf.Tensor]:
        """Preprocessed ``[B, Hp, Wp, 3]`` images + ``[B, 5]`` info -> exported outputs."""
        # Plain-TF ops only: a graph holding our custom ops would not load without their libraries.
        detections = self.model({"images": images, "image_info": image_info}, training=False, custom_ops=False)
        return postprocess_detections(detections, image_info, canvas_hw, self.category_ids, self.class_names,
                                      self.model.config.detection.mask_paste, self.input_config.box_scaling)

    def _serve(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        """``serving_default`` body: ``[B, H, W, 3] uint8`` (one size per batch) -> outputs."""
        inputs, image_info = preprocess_batch(images, self.input_config, self.padded_size)
        return self.detect(inputs, image_info, tf.shape(images)[1:3])

    def _serve_bytes(self, image_bytes: tf.Tensor) -> Dict[str, tf.Tensor]:
        """``serving_bytes`` body: ``[B] string`` JPEG/PNG (any sizes) -> outputs, masks on the max H, W."""
        inputs, image_info, valid = preprocess_encoded(image_bytes, self.input_config, self.padded_size)
        canvas_hw = tf.reduce_max(original_hw(image_info), axis=0)
        return blank_invalid(self.detect(inputs, image_info, canvas_hw), valid)

    def _make_functions(self) -> Dict[str, tf.types.experimental.PolymorphicFunction]:
        """The two serving ``tf.function``s (plain Python bodies, so no autograph)."""
        return {"serving_default": tf.function(self._serve, autograph=False, input_signature=[
                    tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")]),
                "serving_bytes": tf.function(self._serve_bytes, autograph=False, input_signature=[
                    tf.TensorSpec([None], tf.string, name="image_bytes")])}

    def serve(self, images) -> Dict[str, tf.Tensor]:
        """Traced ``serving_default``: ``images [B, H, W, 3] uint8`` -> outputs."""
        return self._functions.value["serving_default"](images)

    def serve_bytes(self, image_bytes) -> Dict[str, tf.Tensor]:
        """Traced ``serving_bytes``: ``[B] string`` encoded images -> outputs."""
        return self._functions.value["serving_bytes"](image_bytes)

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        """``{"serving_default": ..., "serving_bytes": ...}`` concrete functions for saving."""
        return {name: function.get_concrete_function() for name, function in self._functions.value.items()}


def _ensure_built(model, padded_size: Tuple[int, int]) -> None:
    """Creates the model's variables (inference call on zeros) unless it is built."""
    if model.built:
        return
    info = tf.constant([[padded_size[0], padded_size[1], 1.0, padded_size[0], padded_size[1]]], tf.float32)
    model({"images": tf.zeros([1, *padded_size, 3]), "image_info": info}, training=False)


def write_labels(path: str, class_names: Sequence[str], category_ids: Sequence[int]) -> None:
    """Writes ``{"<category id>": name}`` JSON for the foreground classes."""
    labels = {str(int(i)): str(n) for i, n in zip(category_ids[1:], class_names[1:])}
    with open(path, "w") as f:
        json.dump(labels, f, indent=1)


def export_saved_model(model, export_dir: str, input_config: InputConfig, class_names: Sequence[str],
                       category_ids: Sequence[int], overwrite: bool = False) -> str:
    """Writes the SavedModel (signatures ``serving_default``, ``serving_bytes``) and ``labels.json``.

    Written atomically (:func:`common.io.saved_model.save`): a failed export never leaves a partial model.

    Args:
      model: a ``MaskRCNN`` (weights as they are now).
      export_dir: local destination directory.
      input_config, class_names, category_ids: see :class:`DetectionModule`.
      overwrite: replace an existing ``export_dir`` (else ``FileExistsError``).

    Returns:
      The absolute export directory.
    """
    module = DetectionModule(model, input_config, class_names, category_ids)
    labels = lambda folder: write_labels(os.path.join(folder, LABELS_FILE), module.class_names,  # noqa: E731
                                         module.category_ids)
    return saved_model.save(module, export_dir, module.signatures(), overwrite=overwrite, extra=labels)


# ------------------------------------------------------------------ verification
MASK_FLIP_FRACTION = 1e-3
def reference_detections(module: DetectionModule, image: np.ndarray) -> Dict[str, np.ndarray]:
    """Eager Keras path for one image: preprocess, ``model(...)``, postprocess -> numpy ``[1, ...]``."""
    inputs, info = preprocess_image(tf.constant(image, tf.uint8), module.input_config, module.padded_size)
    out = module.detect(inputs[None], info[None], tf.shape(image)[:2])
    return {key: value.numpy() for key, value in out.items()}


def _max_delta(got: Dict[str, np.ndarray], want: Dict[str, np.ndarray], tolerance: float) -> Tuple[float, bool]:
    """(max |delta| of boxes and scores, whether every ``|delta| <= tolerance * max(1, |want|)``)."""
    delta, ok = 0.0, True
    for key in ("detection_boxes", "detection_scores"):
        diff = np.abs(got[key].astype(np.float64) - want[key])
        delta = max(delta, float(np.max(diff, initial=0.0)))
        ok = ok and bool(np.all(diff <= tolerance * np.maximum(1.0, np.abs(want[key]))))
    return delta, ok


def _on_paste_boundary(got: Dict[str, np.ndarray], want: Dict[str, np.ndarray], mask_paste: str) -> np.ndarray:
    """``[B, D] bool``: detections whose torchvision paste box differs between the two runs (their masks
    may move by a pixel: ``ops.paste_masks.torchvision_paste_boxes``); all False for other paste modes."""
    if mask_paste != "torchvision":
        return np.zeros(want["detection_scores"].shape, bool)
    return np.any(torchvision_paste_boxes(got["detection_boxes"]) != torchvision_paste_boxes(want["detection_boxes"]),
                  axis=-1)


def _compare(name: str, got: Dict[str, np.ndarray], want: Dict[str, np.ndarray], tolerance: float,
             mask_paste: str = "continuous") -> float:
    """Max |delta| of boxes/scores; raises on any other difference or a delta above tolerance.

    Masks on a torchvision paste rounding boundary (:func:`_on_paste_boundary`) are left out of the
    mask comparison; their count is printed.
    """
    boundary = _on_paste_boundary(got, want, mask_paste) if got["detection_boxes"].shape == \
        want["detection_boxes"].shape else None
    if boundary is not None and boundary.any():
        print(f"{name}: {int(boundary.sum())} mask(s) on a paste rounding boundary (box edge within float noise "
              "of an integer: the mask may move by 1 px) left out of the mask comparison")
    for key in ("num_detections", "detection_classes", "detection_class_names", "detection_masks"):
        if got[key].shape != want[key].shape:
            raise ExportVerificationError(f"{name}: {key} differs from the Keras model (shape)")
        differs = got[key] != want[key]
        if key == "detection_masks" and boundary is not None:
            differs = differs & ~boundary[..., None, None]
        wrong = int(np.sum(differs))
        # A mask pixel whose probability sits at the 0.5 threshold may flip between the
        # graph and eager float orderings; allow 0.1 % of the foreground, nothing else.
        allowed = int(MASK_FLIP_FRACTION * np.sum(want[key])) if key == "detection_masks" else 0
        if wrong > allowed:
            raise ExportVerificationError(f"{name}: {key} differs from the Keras model ({wrong} values, "
                                          f"allowed {allowed})")
    delta, ok = _max_delta(got, want, tolerance)
    if not ok:
        raise ExportVerificationError(f"{name}: boxes/scores differ from the Keras model by up to {delta:.3g} "
                                      f"(allowed: {tolerance:.3g} * max(1, |value|))")
    return delta


def _encode_png(image: np.ndarray) -> bytes:
    """``[H, W, 3] uint8`` -> lossless PNG bytes."""
    return tf.io.encode_png(tf.constant(image, tf.uint8)).numpy()


def _check_bytes_signature(loaded, images, references, tolerance: float, mask_paste: str) -> float:
    """Runs ``serving_bytes`` on all images at once; compares each with its reference."""
    batch = tf.constant([_encode_png(image) for image in images])
    out = {k: v.numpy() for k, v in loaded.signatures["serving_bytes"](image_bytes=batch).items()}
    canvas = out["detection_masks"].shape[2:]
    delta = 0.0
    for b, (image, want) in enumerate(zip(images, references)):
        got = {key: value[b:b + 1] for key, value in out.items()}
        masks = got["detection_masks"]
        height, width = image.shape[:2]
        if masks[:, :, height:].any() or masks[:, :, :, width:].any():
            raise ExportVerificationError(f"image_bytes, image {b}: mask pixels outside its {height}x{width}")
        got["detection_masks"] = masks[:, :, :height, :width]
        delta = max(delta, _compare(f"image_bytes, image {b} (canvas {canvas})", got, want, tolerance, mask_paste))
    return delta


def verify_export(model, export_dir: str, images: List[np.ndarray], input_config: InputConfig,
                  class_names: Sequence[str], category_ids: Sequence[int],
                  tolerance: float = DEFAULT_TOLERANCE) -> float:
    """Reloads an export and checks both signatures against the eager Keras path.

    ``serving_default`` runs each image alone; ``serving_bytes`` runs all of them in one
    batch (PNG-encoded, so decoding is lossless).

    Args:
      model: the exported ``MaskRCNN``.
      export_dir: directory written by :func:`export_saved_model`.
      images: ``[H_i, W_i, 3] uint8`` arrays.
      input_config, class_names, category_ids: as given to the export.
      tolerance: allowed ``|delta| <= tolerance * max(1, |value|)``: absolute for scores,
        relative for box coordinates above 1 pixel (float32 graph vs eager rounding grows
        with the coordinate: ~1e-4 px at 100 px on a tiny CPU model).

    Returns:
      The largest |delta| of boxes/scores over images and signatures.

    Raises:
      ExportVerificationError: classes, names, masks or counts differ, or delta > tolerance.
    """
    module = DetectionModule(model, input_config, class_names, category_ids)
    loaded = saved_model.load(export_dir)
    missing = [s for s in SIGNATURES if s not in loaded.signatures]
    if missing:
        raise ExportVerificationError(f"{export_dir}: SavedModel lacks signatures {missing}")
    references = [reference_detections(module, image) for image in images]
    mask_paste = model.config.detection.mask_paste
    delta = 0.0
    for b, (image, want) in enumerate(zip(images, references)):
        out = loaded.signatures["serving_default"](images=tf.constant(image[None], tf.uint8))
        got = {key: value.numpy() for key, value in out.items()}
        delta = max(delta, _compare(f"serving_default, image {b}", got, want, tolerance, mask_paste))
    return max(delta, _check_bytes_signature(loaded, images, references, tolerance, mask_paste))
