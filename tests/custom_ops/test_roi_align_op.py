"""custom_ops/roi_align: the fused op against the plain-TF path, gradients, edge cases, errors."""
import numpy as np
import pytest
import tensorflow as tf

from custom_ops import loader
from custom_ops.harness import roi_align_reference
from custom_ops.roi_align import ops as fused_ops
from mrcnn_tf2.ops import roi_align

pytestmark = pytest.mark.skipif(not fused_ops.available(), reason="roi_align op library unavailable")

LEVELS = (2, 3, 4, 5)
IMAGE = (128, 160)


def make_features(rng, batch=2, channels=5, dtype=np.float32):
    """P2..P5 of a 128x160 image: ``[[B, 128 / 2**l, 160 / 2**l, C]]``."""
    return [tf.constant(rng.normal(size=(batch, IMAGE[0] >> l, IMAGE[1] >> l, channels)).astype(dtype))
            for l in LEVELS]


def make_boxes(rng, batch=2, num=40):
    """``[B, num, 4]`` random boxes of all levels, plus edge cases: empty, inverted, outside, huge."""
    corner = rng.uniform(-30, 170, (batch, num, 2))
    size = np.exp(rng.uniform(np.log(0.5), np.log(700), (batch, num, 2)))
    boxes = np.concatenate([corner, corner + size], axis=-1)
    edge = np.array([[10.3, 20.7, 10.3, 20.7],      # zero size
                     [50.2, 60.1, 30.4, 40.9],      # inverted
                     [-90.5, -70.2, -20.3, -10.1],  # above-left of the image
                     [300.6, 400.2, 420.1, 530.7],  # below-right of the image
                     [-500.3, -600.2, 700.4, 800.9],  # huge, covers the image (level 5)
                     [126.2, 157.6, 129.9, 163.3]])  # straddles the bottom-right border
    boxes[:, :len(edge)] = edge
    return tf.constant(boxes.astype(np.float32))


def fused_path(features, boxes, **kwargs):
    return fused_ops.multilevel_roi_align(features, boxes, min_level=LEVELS[0], **kwargs)


def plain_path(features, boxes, **kwargs):
    return roi_align.plain_multilevel_roi_align(dict(zip(LEVELS, features)), boxes, min_level=LEVELS[0],
                                                max_level=LEVELS[-1], **kwargs)


def both_paths(features, boxes, **kwargs):
    return fused_path(features, boxes, **kwargs), plain_path(features, boxes, **kwargs)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("size,ratio", [(7, 2), (14, 2), (5, 1), (3, 3)])
def test_forward_matches_plain_tf(size, ratio, aligned):
    rng = np.random.default_rng(size * 10 + ratio)
    features, boxes = make_features(rng), make_boxes(rng)
    fused, plain = both_paths(features, boxes, output_size=size, sampling_ratio=ratio, aligned=aligned)
    assert fused.shape == plain.shape == (2, 40, size, size, 5)
    np.testing.assert_allclose(fused.numpy(), plain.numpy(), atol=2e-5, rtol=1e-5)
    assert set(roi_align.assign_levels(boxes).numpy().ravel()) == set(LEVELS)


@pytest.mark.parametrize("aligned", [False, True])
def test_feature_gradient_matches_plain_tf(aligned):
    rng = np.random.default_rng(1)
    features, boxes = make_features(rng), make_boxes(rng)
    weights = tf.constant(rng.normal(size=(2, 40, 7, 7, 5)).astype(np.float32))
    grads = []
    for path in (fused_path, plain_path):
        with tf.GradientTape() as tape:
            tape.watch(features)
            loss = tf.reduce_sum(path(features, boxes, output_size=7, sampling_ratio=2, aligned=aligned) * weights)
        grads.append(tape.gradient(loss, features))
    for fused, plain in zip(*grads):
        np.testing.assert_allclose(fused.numpy(), plain.numpy(), atol=1e-4, rtol=1e-5)


def test_compute_gradient_float64():
    rng = np.random.default_rng(2)
    features = [tf.constant(rng.normal(size=(1, 32 >> l, 40 >> l, 2))) for l in LEVELS]
    boxes = tf.constant([[[3.3, 2.1, 20.7, 30.2], [-4.0, 5.5, 40.0, 70.0], [1.0, 2.0, 1.5, 2.5],
                          [-100.0, -80.0, 300.0, 200.0]]], tf.float32)

    def crops(*levels):
        return fused_ops.multilevel_roi_align(list(levels), boxes, output_size=3, sampling_ratio=2)

    theoretical, numerical = tf.test.compute_gradient(crops, features)
    for got, want in zip(theoretical, numerical):
        np.testing.assert_allclose(got, want, atol=1e-8)
    assert any(np.abs(t).sum() > 0 for t in theoretical)


@pytest.mark.parametrize("batch,num", [(2, 0), (0, 3)])
def test_empty_inputs(batch, num):
    features = make_features(np.random.default_rng(3), batch=batch, channels=4)
    boxes = tf.zeros([batch, num, 4])
    with tf.GradientTape() as tape:
        tape.watch(features)
        crops = fused_ops.multilevel_roi_align(features, boxes, output_size=7)
    assert crops.shape == (batch, num, 7, 7, 4)
    grads = tape.gradient(crops, features, output_gradients=tf.ones_like(crops))
    assert [g.shape for g in grads] == [f.shape for f in features]
    assert all(not np.any(g.numpy()) for g in grads)


def test_deterministic_and_traceable():
    rng = np.random.default_rng(4)
    features, boxes = make_features(rng, channels=40), make_boxes(rng)

    @tf.function
    def grads(levels):
        with tf.GradientTape() as tape:
            tape.watch(levels)
            crops = fused_ops.multilevel_roi_align(levels, boxes, output_size=7)
        return tape.gradient(crops, levels, output_gradients=tf.ones_like(crops))

    first, second = grads(features), grads(features)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_dtypes(dtype):
    rng = np.random.default_rng(5)
    features, boxes = make_features(rng, dtype=dtype), make_boxes(rng)
    fused, plain = both_paths(features, boxes, output_size=7)
    assert fused.dtype == plain.dtype == tf.as_dtype(dtype)
    np.testing.assert_allclose(fused.numpy().astype(np.float64), plain.numpy().astype(np.float64),
                               atol=2e-2 if dtype == np.float16 else 2e-5)


def test_numpy_reference_forward_and_backward():
    """The harness' CPU reference (used against the CUDA kernels) agrees with the CPU kernel."""
    rng = np.random.default_rng(6)
    features, boxes = make_features(rng, channels=3), make_boxes(rng, num=12)
    grad = rng.normal(size=(2, 12, 4, 4, 3))
    for aligned in (False, True):
        kwargs = dict(output_size=4, sampling_ratio=2, aligned=aligned)
        with tf.GradientTape() as tape:
            tape.watch(features)
            crops = fused_ops.multilevel_roi_align(features, boxes, min_level=2, **kwargs)
        fused_grads = tape.gradient(crops, features, output_gradients=tf.constant(grad, tf.float32))
        levels, box_array = [f.numpy() for f in features], boxes.numpy()
        np.testing.assert_allclose(roi_align_reference.forward(levels, box_array, min_level=2, **kwargs),
                                   crops.numpy(), atol=1e-5)
        for ref, got in zip(roi_align_reference.backward(grad, levels, box_array, min_level=2, **kwargs),
                            fused_grads):
            np.testing.assert_allclose(ref, got.numpy(), atol=1e-5)


def test_invalid_shapes_are_clear_errors():
    lib = fused_ops.library()
    good = make_features(np.random.default_rng(7), channels=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="disagree on the batch size"):
        lib.multilevel_roi_align(good, tf.zeros([3, 1, 4]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size and channels"):
        lib.multilevel_roi_align(good[:3] + [tf.zeros([2, 4, 5, 3])], tf.zeros([2, 1, 4]))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        lib.multilevel_roi_align(good, tf.zeros([2, 1, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be"):
        lib.multilevel_roi_align_grad(tf.zeros([2, 1, 6, 6, 2]), tf.zeros([2, 1, 4]), good)


def test_dispatch_and_switch_off(monkeypatch):
    rng = np.random.default_rng(8)
    features, boxes = dict(zip(LEVELS, make_features(rng))), make_boxes(rng)

    def traced(fused):
        fn = tf.function(lambda b: roi_align.multilevel_roi_align(features, b, output_size=7, aligned=False,
                                                                  fused=fused))
        graph = fn.get_concrete_function(boxes).graph
        return fn(boxes), {op.type for op in graph.get_operations()}

    on, on_ops = traced(True)
    off, off_ops = traced(False)
    fresh = loader.OpLibraryLoader()
    monkeypatch.setenv(loader.ENV_DISABLE, "1")  # the machine-wide opt-out
    assert fresh.load(fused_ops.LIBRARY) is None
    assert "MultilevelRoiAlign" in on_ops and "CropAndResize" not in on_ops
    assert "MultilevelRoiAlign" not in off_ops and "CropAndResize" in off_ops
    np.testing.assert_allclose(on.numpy(), off.numpy(), atol=2e-5, rtol=1e-5)


def test_cuda_harness_problem_struct_matches_the_c_header(tmp_path):
    """The harness' ctypes struct has the layout of MrcnnRoiAlignProblem (checked with g++, no GPU)."""
    import ctypes
    import os
    import subprocess

    from custom_ops.harness import roi_align_harness, run_cuda_harness

    assert "roi_align" in run_cuda_harness.discover()
    program = tmp_path / "layout.c"
    program.write_text('#include <stddef.h>\n#include <stdio.h>\n#include "roi_align_cuda.h"\n'
                       'int main(void) { printf("%zu %zu %zu", sizeof(MrcnnRoiAlignProblem), '
                       'offsetof(MrcnnRoiAlignProblem, widths), offsetof(MrcnnRoiAlignProblem, aligned)); }\n')
    include = os.path.join(loader.OPS_ROOT, "roi_align")
    subprocess.run(["gcc", f"-I{include}", str(program), "-o", str(tmp_path / "layout")], check=True)
    sizes = subprocess.run([str(tmp_path / "layout")], capture_output=True, text=True, check=True).stdout.split()
    Problem = roi_align_harness.Problem
    assert [int(v) for v in sizes] == [ctypes.sizeof(Problem), Problem.widths.offset, Problem.aligned.offset]
    levels, boxes = roi_align_harness.make_inputs(num=8, channels=2)
    problem = roi_align_harness.make_problem(levels, boxes, 7, 2, True)
    assert (problem.batch, problem.boxes_per_image, problem.channels, problem.heights[3]) == (2, 8, 2, 8)
