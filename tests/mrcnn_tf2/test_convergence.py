"""Mask R-CNN learns: COCO AP (pycocotools) on the generated shapes after a short CPU run.

The CI model is a *narrow* ResNet-50-FPN Mask R-CNN trained from random weights
(``scripts/convergence_check.py``'s ``CI_RECIPE``): ``backbone.width_multiplier=0.25``,
128 channels in the FPN and RPN (256 in the real model; the mask head keeps its 256), and
fewer proposals and RoIs than NVIDIA's defaults. Every component is the real one:
ResNet-50 (all 16 bottleneck blocks, BatchNorm trained with ``--finetune_bn``), FPN
P2-P6, RPN with anchor targets, NMS proposals, the RoI sampler, multilevel ROIAlign,
the box and mask heads, the real losses, and the pycocotools bbox + segm evaluation
that ``main.py train`` runs at the end. ``scripts/convergence_check.py`` runs the same
recipe at full width for longer.
"""
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from dataset.make_synthetic_shapes import make_dataset
from mrcnn_tf2.config import MaskRCNNConfig
from mrcnn_tf2.data.inputs import InputConfig
from mrcnn_tf2.data.sources import resolve_sources
from mrcnn_tf2.task import DetectionTaskConfig, InstanceSegmentationTask

IMAGE_SIZE = 128
TINY = {"backbone.width_multiplier": 0.25, "fpn.channels": 64, "rpn.channels": 64, "mask_head.channels": 32,
        "box_head.fc_dims": 256, "rpn.pre_nms_topk_train": 500, "rpn.post_nms_topk_train": 200,
        "roi_sampler.batch_size_per_image": 64}


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tiny_shapes"))
    make_dataset(root, num_train=2, num_val=2, image_size=IMAGE_SIZE, seed=5, empty_fraction=0.0)
    return root


def _tiny_training(root, finetune_bn):
    """``(task, model, batch, step)``: the TINY model on one batch of ``root`` and a clipped SGD step on it."""
    keras.utils.set_random_seed(0)
    data = resolve_sources(root)
    inputs = InputConfig(image_size=(IMAGE_SIZE, IMAGE_SIZE), flip=False)
    config = MaskRCNNConfig().override(**{
        "num_classes": data.num_classes, "image_size": inputs.batch_padded_size(), "backbone.finetune_bn": finetune_bn,
        **TINY})
    task = InstanceSegmentationTask(DetectionTaskConfig(config, inputs, data, seed=0))
    model = task.build_model()
    batch = next(iter(task.build_train_dataset(global_batch=2, epoch=0)))
    optimizer = keras.optimizers.SGD(0.02, momentum=0.9)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss, terms = task.train_loss(model, batch)
        grads = tape.gradient(loss, model.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, 5.0)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, terms

    return task, model, batch, step


def test_few_steps_lower_the_loss(tiny_shapes):
    """Twelve SGD steps on one repeated batch lower each head's loss (every term finite)."""
    _, _, _, step = _tiny_training(tiny_shapes, finetune_bn=True)
    history = [step() for _ in range(12)]
    losses = np.array([float(loss) for loss, _ in history])
    first, last = history[0][1], history[-1][1]
    assert np.all(np.isfinite(losses)), losses
    assert abs(float(first["mask_loss"]) - np.log(2.0)) < 0.1, first  # uninformed start, not ~12
    assert losses[-1] < 0.7 * losses[0], losses
    for name in ("rpn_score_loss", "fast_rcnn_class_loss", "mask_loss"):
        assert float(last[name]) < float(first[name]), (name, float(first[name]), float(last[name]))


def test_validation_loss_is_the_training_loss_in_eval_mode(tiny_shapes):
    """On a batch trained 12 steps (BatchNorm frozen, as in NVIDIA's recipe), ``val.loss`` of that batch — the
    same five terms, eval mode, inference proposals, fixed sampler seeds — is within 25 % of its training loss
    (RPN terms within 10 %: the same anchors and targets); ``validation_step`` does not advance the generator."""
    task, model, batch, step = _tiny_training(tiny_shapes, finetune_bn=False)
    for _ in range(12):
        step()
    state = model.sampling_generator.state.numpy().copy()
    validation = {k[5:]: float(v[0]) for k, v in task.validation_step(model, batch).items() if k.startswith("loss.")}
    assert (model.sampling_generator.state.numpy() == state).all()
    train, terms = task.train_loss(model, batch)
    assert abs(validation["loss"] - float(train)) < 0.25 * float(train), (validation, float(train))
    for name in ("rpn_score_loss", "rpn_box_loss"):
        assert abs(validation[name] - float(terms[name])) < 0.1 * float(terms[name]) + 1e-3, (name, validation, terms)


@pytest.mark.timeout(1800)
def test_mask_rcnn_learns_the_shapes(tmp_path):
    """From random weights, CI_RECIPE reaches bbox AP50 >= 0.7 and segm AP50 >= 0.6 (pycocotools).

    The network is narrowed for CI's 2 CPU cores (see the module docstring and
    ``scripts/convergence_check.py``); everything else is the real model, losses and evaluation.
    """
    from scripts.convergence_check import BBOX_AP50, CI_RECIPE, SEGM_AP50, run

    metrics = run(CI_RECIPE, str(tmp_path))
    assert metrics[BBOX_AP50] >= 0.7, metrics
    assert metrics[SEGM_AP50] >= 0.6, metrics
    _check_onnx_export_of_the_trained_model(str(tmp_path), CI_RECIPE.image_size)
    # eval under onnxruntime (the same 24 COCO numbers as TensorFlow) is test_cli.py's
    # test_eval_and_infer_under_onnxruntime_match_tf; here it cost ~90 s of CI for the same code path


def _shape_images(out_dir: str, size: int):
    """PNGs of 0, 1 and 4 generated shapes (and a second 4): batch 1 each, then all four as one batch."""
    from dataset.make_synthetic_shapes import render

    rng, paths = np.random.default_rng(11), []
    for index, count in enumerate((0, 1, 4, 4)):
        image, _ = render(rng, size, size, count)
        paths.append(os.path.join(out_dir, f"shapes{index}_{count}.png"))
        tf.io.write_file(paths[-1], tf.io.encode_png(image))
    return paths


def _check_onnx_export_of_the_trained_model(out_dir: str, size: int):
    """``main.py export --format onnx --verify`` on the trained model: onnxruntime within tolerance on
    images with 0, 1 and many objects, alone and as a batch of 4 (drawing above score 0.5)."""
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    import main
    from common.io import onnx_runtime
    from mrcnn_tf2 import onnx_export

    paths = _shape_images(out_dir, size)
    onnx_file = os.path.join(out_dir, "onnx", "model.onnx")
    argv = ["export", "--model", "mask-rcnn", "--model_dir", os.path.join(out_dir, "run"), "--format", "onnx",
            "--export_dir", os.path.dirname(onnx_file), "--config", "detection.score_threshold=0.5", "--verify", *paths]
    assert main.main(argv) == 0
    images = np.stack([tf.io.decode_png(tf.io.read_file(p)).numpy() for p in paths])
    found = onnx_export.run_onnx(onnx_runtime.make_session(onnx_file), images)["num_detections"].tolist()
    assert found[0] == 0 and found[1] >= 1 and min(found[2:]) >= 2, found
