"""ONNX export of Mask R-CNN (tf2onnx) and its onnxruntime verification.

Shape glossary
  B      images in a request (dynamic)
  H, W   image size: dynamic, or fixed with ``image_hw`` (TensorRT engines want it fixed)
  D      detection slots per image (``detection.max_detections``); m mask side (28)

Graph contract: the SavedModel's ``serving_default`` (:mod:`mrcnn_tf2.export`) with plain
numeric outputs (no strings: class names go in the metadata).

* input ``images``: ``[B, H, W, 3] uint8`` RGB, one size per batch; resize, normalisation and
  padding run inside the graph (bilinear, no antialiasing: ONNX ``Resize`` matches it);
* ``num_detections [B] int32``; ``detection_boxes [B, D, 4] float32`` (ymin, xmin, ymax, xmax) in
  original-image pixels, clipped; ``detection_classes [B, D] int32`` dataset category ids (0 in
  padding); ``detection_scores [B, D] float32`` descending;
* ``--onnx-masks pasted`` (default): ``detection_masks [B, D, H, W] uint8`` 0/1, as the SavedModel;
* ``--onnx-masks raw``: ``detection_mask_logits [B, D, m, m] float32`` (the detected class's
  logits) and ``detection_mask_boxes [B, D, 4] float32`` (unclipped original-pixel boxes to paste
  them into: ``ops.paste_masks``; probability ``sigmoid(logit) >= 0.5`` is the mask);
* metadata properties ``labels`` (JSON ``{category id: name}``), ``masks``, ``mask_paste``, ``input``.

Export-graph rewrites (the Keras model is unchanged): custom ops off (plain-TF ROIAlign,
proposals) and ``ops.export_graph.onnx_friendly`` (the class-specific NMS as one NonMaxSuppression
over (image, class) pairs; ROIAlign by gathers instead of ``CropAndResize``). The remaining ops are
listed with their TensorRT mapping in the README.
"""
from __future__ import annotations

import contextlib
import json
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from common.io import onnx_convert
from mrcnn_tf2.export import DetectionModule, postprocess_boxes, postprocess_detections, preprocess_batch
from mrcnn_tf2.ops import export_graph as export_graph_ops

MIN_OPSET = 17
MASK_MODES = ("pasted", "raw")
INPUT_NAME = "images"
COMMON_OUTPUTS = ("num_detections", "detection_boxes", "detection_classes", "detection_scores")
OUTPUTS = {"pasted": COMMON_OUTPUTS + ("detection_masks",),
           "raw": COMMON_OUTPUTS + ("detection_mask_logits", "detection_mask_boxes")}
# --verify tolerances (the contract): pixels, absolute score, per-detection mask IoU.
BOX_TOLERANCE, SCORE_TOLERANCE, MIN_MASK_IOU = 0.5, 1e-4, 0.99


class OnnxVerificationError(RuntimeError):
    """onnxruntime's outputs differ from the Keras model's past the tolerances."""


def export_outputs(module: DetectionModule, images: tf.Tensor, masks: str = "pasted") -> Dict[str, tf.Tensor]:
    """``[B, H, W, 3] uint8`` -> the :data:`OUTPUTS` of ``masks`` (the export body; eager = reference)."""
    if masks not in MASK_MODES:
        raise ValueError(f"Received: masks={masks!r}; expected one of {MASK_MODES}")
    inputs, image_info = preprocess_batch(images, module.input_config, module.padded_size)
    raw = masks == "raw"
    out = module.model({"images": inputs, "image_info": image_info}, training=False, mask_logits=raw, custom_ops=False)
    if not raw:
        post = postprocess_detections(out, image_info, tf.shape(images)[1:3], module.category_ids,
                                      module.class_names, module.model.config.detection.mask_paste,
                                      module.input_config.box_scaling)
        return {key: post[key] for key in OUTPUTS["pasted"]}
    post, unclipped = postprocess_boxes(out, image_info, module.category_ids, module.class_names,
                                        module.input_config.box_scaling)
    return {**{key: post[key] for key in COMMON_OUTPUTS}, "detection_mask_logits": out["detection_mask_logits"],
            "detection_mask_boxes": unclipped}


@contextlib.contextmanager
def _safe_reshape_merging() -> Iterator[None]:
    """tf2onnx 1.17 merges ``Reshape -> Reshape`` into one even when the second shape holds 0s ("copy
    this dim of the input"), which then copy the FIRST reshape's input dims: a dense layer's
    ``[B, S, 4C] -> [B, S, C, 4]`` became ``[B * S, 4C] -> [0, 0, -1, 4]`` (fails at run time). While
    converting, such pairs (and pairs with a computed second shape) are left unmerged."""
    from tf2onnx.optimizer import back_to_back_optimizer

    table, key = back_to_back_optimizer._func_map, ("Reshape",)  # pylint: disable=protected-access
    merge = table[key]

    def guarded(g, node, consumer_nodes):
        shape = consumer_nodes[0].inputs[1] if len(consumer_nodes) == 1 else None
        if shape is not None and (not shape.is_const() or 0 in shape.get_tensor_value(as_list=True)):
            return []
        return merge(g, node, consumer_nodes)

    table[key] = guarded
    try:
        yield
    finally:
        table[key] = merge


@contextlib.contextmanager
def tracing_context() -> Iterator[None]:
    """While tracing for ONNX: the shared-box NMS (the model is called with ``custom_ops=False``)."""
    with export_graph_ops.onnx_friendly():
        yield


def export_function(module: DetectionModule, masks: str = "pasted",
                    image_hw: Optional[Tuple[int, int]] = None) -> tf.types.experimental.PolymorphicFunction:
    """The ``tf.function`` tf2onnx converts: ``images [B, H, W, 3] uint8`` -> ``OUTPUTS[masks]``."""
    height, width = image_hw or (None, None)
    spec = tf.TensorSpec([None, height, width, 3], tf.uint8, name=INPUT_NAME)

    slots, side = module.model.config.detection.max_detections, module.model.config.mask_head.resolution
    static = {"detection_boxes": [None, slots, 4], "detection_classes": [None, slots],
              "detection_scores": [None, slots], "detection_masks": [None, slots, height, width],
              "detection_mask_logits": [None, slots, side, side], "detection_mask_boxes": [None, slots, 4]}

    def serve(images):
        out = export_outputs(module, images, masks)
        # Static dims where they are known, so that onnx's shape inference (and TensorRT) sees them.
        return [tf.identity(tf.ensure_shape(out[key], static.get(key, [None])), name=key) for key in OUTPUTS[masks]]

    return tf.function(serve, autograph=False, input_signature=[spec])


def export_onnx(model, path: str, input_config, class_names: Sequence[str], category_ids: Sequence[int],
                masks: str = "pasted", opset: int = MIN_OPSET, image_hw: Optional[Tuple[int, int]] = None) -> str:
    """Converts ``model`` to ``path`` (see the module docstring); checks it with ``onnx.checker``.

    Args:
      model: a ``MaskRCNN``; input_config, class_names, category_ids: as for the SavedModel.
      masks: ``pasted`` or ``raw`` (:data:`MASK_MODES`).
      opset: ONNX opset, >= 17.
      image_hw: fixed ``(H, W)`` of the input (None: dynamic).

    Raises:
      ValueError: opset below 17 or an unknown ``masks``.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}. Received: opset={opset}")
    if masks not in MASK_MODES:
        raise ValueError(f"Received: masks={masks!r}; expected one of {MASK_MODES}")
    module = DetectionModule(model, input_config, class_names, category_ids)
    proto = convert(export_function(module, masks, image_hw), OUTPUTS[masks], opset)
    labels = {str(i): n for i, n in zip(module.category_ids[1:], module.class_names[1:])}
    meta = {"labels": json.dumps(labels), "masks": masks, "mask_paste": model.config.detection.mask_paste,
            "input": "uint8 [B, H, W, 3] RGB (one size per batch); resize, normalisation, padding inside"}
    return onnx_convert.save_checked(proto, path, meta)


def convert(function, output_names: Sequence[str], opset: int = MIN_OPSET):
    """tf2onnx on a traced Mask R-CNN ``function`` (under :func:`tracing_context`, with the Reshape
    guard), outputs named ``output_names``, nearest resizes modernised; returns the ONNX proto."""
    import tf2onnx

    with tracing_context(), _safe_reshape_merging():
        proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=opset)
    onnx_convert.name_outputs(proto, output_names)
    _modernise_nearest_resizes(proto)
    return proto


def _modernise_nearest_resizes(proto) -> None:
    """tf2onnx writes TF's nearest resize (the FPN's 2x upsampling) with ``tf_half_pixel_for_nn``, deprecated
    since opset 13 (onnxruntime warns on every load; TensorRT's parser may refuse it). For an integer scale
    ``floor((x + 0.5) / s) == floor(x / s)``, so ``asymmetric`` (with ``floor``) is the same resize."""
    for node in proto.graph.node:
        if node.op_type != "Resize":
            continue
        for attribute in node.attribute:
            if attribute.name == "coordinate_transformation_mode" and attribute.s == b"tf_half_pixel_for_nn":
                attribute.s = b"asymmetric"


def run_onnx(session, images: np.ndarray) -> Dict[str, np.ndarray]:
    """onnxruntime session on ``[B, H, W, 3] uint8`` -> ``{output name: array}``."""
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT_NAME: images})))


# ------------------------------------------------------------------ verification
def mask_ious(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """``[n, ...]`` 0/1 masks -> ``[n]`` IoU (1 where both are empty)."""
    pixels = int(np.prod(want.shape[1:]))  # not -1: an image without detections has n = 0
    got, want = got.reshape(len(got), pixels).astype(bool), want.reshape(len(want), pixels).astype(bool)
    union = np.sum(got | want, axis=1)
    return np.where(union > 0, np.sum(got & want, axis=1) / np.maximum(union, 1), 1.0)


def compare(got: Dict[str, np.ndarray], want: Dict[str, np.ndarray], name: str) -> Dict[str, float]:
    """Checks one batch of onnxruntime outputs against the Keras ones (the issue's tolerances).

    Returns:
      ``{"detections", "max_box_px", "max_score", "min_mask_iou"}`` over the batch.

    Raises:
      OnnxVerificationError: a count, class, box, score or mask is past tolerance (one line).
    """
    if not np.array_equal(got["num_detections"], want["num_detections"]):
        raise OnnxVerificationError(f"{name}: num_detections {got['num_detections'].tolist()} != Keras "
                                    f"{want['num_detections'].tolist()}")
    stats = {"detections": int(np.sum(want["num_detections"])), "max_box_px": 0.0, "max_score": 0.0,
             "min_mask_iou": 1.0}
    mask_key = "detection_masks" if "detection_masks" in want else "detection_mask_logits"
    for b, num in enumerate(want["num_detections"]):
        g, w = ({key: value[b, :num] for key, value in d.items() if key != "num_detections"} for d in (got, want))
        if not np.array_equal(g["detection_classes"], w["detection_classes"]):
            raise OnnxVerificationError(f"{name}, image {b}: classes differ from Keras")
        boxes = [np.abs(g[k] - w[k]).max(initial=0.0) for k in ("detection_boxes", "detection_mask_boxes") if k in w]
        stats["max_box_px"] = max(stats["max_box_px"], *map(float, boxes))
        stats["max_score"] = max(stats["max_score"], float(np.abs(g["detection_scores"] - w["detection_scores"]).max(initial=0.0)))
        binary = (lambda m: m) if mask_key == "detection_masks" else (lambda m: m >= 0.0)  # logit 0 = probability 0.5
        stats["min_mask_iou"] = min(stats["min_mask_iou"], float(mask_ious(binary(g[mask_key]), binary(w[mask_key])).min(initial=1.0)))
    failures = [f"boxes {stats['max_box_px']:.3g} px > {BOX_TOLERANCE}"] * (stats["max_box_px"] > BOX_TOLERANCE)
    failures += [f"scores {stats['max_score']:.3g} > {SCORE_TOLERANCE}"] * (stats["max_score"] > SCORE_TOLERANCE)
    failures += [f"mask IoU {stats['min_mask_iou']:.4f} < {MIN_MASK_IOU}"] * (stats["min_mask_iou"] < MIN_MASK_IOU)
    if failures:
        raise OnnxVerificationError(f"{name}: onnxruntime differs from Keras: {'; '.join(failures)}")
    return stats


def batches_for(images: List[np.ndarray]) -> List[np.ndarray]:
    """Each image alone (batch 1), then every group of >= 2 equal-size images as one batch."""
    by_size: Dict[Tuple[int, ...], List[np.ndarray]] = {}
    for image in images:
        by_size.setdefault(image.shape, []).append(image)
    return [image[None] for image in images] + [np.stack(group) for group in by_size.values() if len(group) > 1]


def verify_onnx(model, path: str, images: List[np.ndarray], input_config, class_names: Sequence[str],
                category_ids: Sequence[int], masks: str = "pasted", threads: Optional[int] = None) -> Dict[str, float]:
    """onnxruntime on ``path`` vs the eager Keras path on ``[H, W, 3] uint8`` images (batches of
    :func:`batches_for`): same counts and classes, boxes within 0.5 px, scores within 1e-4, mask IoU >= 0.99.

    Returns:
      The worst figures over all batches (:func:`compare`), plus ``"batches"``.

    Raises:
      OnnxVerificationError: past a tolerance.
    """
    from common.io import onnx_runtime

    module = DetectionModule(model, input_config, class_names, category_ids)
    session = onnx_runtime.make_session(path, threads)
    worst = {"batches": 0, "detections": 0, "max_box_px": 0.0, "max_score": 0.0, "min_mask_iou": 1.0}
    for batch in batches_for(images):
        want = {k: v.numpy() for k, v in export_outputs(module, tf.constant(batch), masks).items()}
        stats = compare(run_onnx(session, batch), want, f"batch of {len(batch)} {batch.shape[1]}x{batch.shape[2]}")
        worst = {"batches": worst["batches"] + 1, "detections": worst["detections"] + stats["detections"],
                 "max_box_px": max(worst["max_box_px"], stats["max_box_px"]),
                 "max_score": max(worst["max_score"], stats["max_score"]),
                 "min_mask_iou": min(worst["min_mask_iou"], stats["min_mask_iou"])}
    return worst


def op_inventory(path_or_proto) -> Dict[str, int]:
    """Op type -> node count over the whole graph, Loop/If bodies included (README's TensorRT table)."""
    import onnx

    proto = onnx.load(path_or_proto) if isinstance(path_or_proto, str) else path_or_proto
    counts: Dict[str, int] = {}

    def visit(graph):
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
            for attribute in node.attribute:
                for sub in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)):
                    visit(sub)

    visit(proto.graph)
    return dict(sorted(counts.items()))
