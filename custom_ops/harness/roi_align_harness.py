"""Harness of the multilevel ROIAlign CUDA kernels against the NumPy CPU reference.

Calls ``mrcnn_roi_align_forward_cuda`` / ``mrcnn_roi_align_backward_cuda``
(custom_ops/roi_align/roi_align_cuda.h) through ctypes on random P2..P5 features of a
256x320 image and boxes of every level plus edge cases (empty, inverted, outside the
image, huge), both geometries, 7x7 / 14x14 and sampling ratios 1 and 2.
"""
from __future__ import annotations

import ctypes
from typing import List, Tuple

import numpy as np

from custom_ops.harness import roi_align_reference

CUDA_SOURCES = ["roi_align/roi_align_cuda.cu"]
MAX_LEVELS = 8
LEVELS = (2, 3, 4, 5)
IMAGE = (256, 320)
CASES = [(7, 2, False), (7, 2, True), (14, 2, False), (14, 1, True)]  # (R, s, aligned)


class Problem(ctypes.Structure):
    """ctypes mirror of ``MrcnnRoiAlignProblem``."""

    _fields_ = [("num_levels", ctypes.c_int), ("min_level", ctypes.c_int), ("batch", ctypes.c_int),
                ("boxes_per_image", ctypes.c_int), ("channels", ctypes.c_int),
                ("heights", ctypes.c_int * MAX_LEVELS), ("widths", ctypes.c_int * MAX_LEVELS),
                ("output_size", ctypes.c_int), ("sampling_ratio", ctypes.c_int), ("aligned", ctypes.c_int)]


def make_problem(levels, boxes: np.ndarray, output_size: int, sampling_ratio: int, aligned: bool) -> Problem:
    """The ``Problem`` struct for levels ``[B, H_l, W_l, C]`` and boxes ``[B, N, 4]``."""
    problem = Problem(num_levels=len(levels), min_level=LEVELS[0], batch=boxes.shape[0],
                      boxes_per_image=boxes.shape[1], channels=levels[0].shape[-1], output_size=output_size,
                      sampling_ratio=sampling_ratio, aligned=int(aligned))
    for index, level in enumerate(levels):
        problem.heights[index], problem.widths[index] = level.shape[1], level.shape[2]
    return problem


def make_inputs(seed: int = 0, batch: int = 2, num: int = 150, channels: int = 64):
    """Random levels ``[B, 256 / 2**l, 320 / 2**l, C]`` float32 and boxes ``[B, num, 4]`` float32."""
    rng = np.random.default_rng(seed)
    levels = [rng.standard_normal((batch, IMAGE[0] >> l, IMAGE[1] >> l, channels)).astype(np.float32)
              for l in LEVELS]
    corner = rng.uniform(-30, 330, (batch, num, 2))
    size = np.exp(rng.uniform(np.log(0.5), np.log(900), (batch, num, 2)))
    boxes = np.concatenate([corner, corner + size], axis=-1)
    boxes[:, :5] = [[10.3, 20.7, 10.3, 20.7], [50.2, 60.1, 30.4, 40.9], [-90.5, -70.2, -20.3, -10.1],
                    [300.6, 400.2, 420.1, 530.7], [-500.3, -600.2, 700.4, 800.9]]
    return levels, boxes.astype(np.float32)


def _pointer_array(pointers):
    return (ctypes.c_void_p * MAX_LEVELS)(*pointers)


def cuda_forward(lib, cuda, levels, boxes, problem: Problem) -> np.ndarray:
    """Crops ``[B, N, R, R, C]`` from the CUDA forward kernel."""
    shape = (*boxes.shape[:2], problem.output_size, problem.output_size, problem.channels)
    crops = cuda.empty(shape)
    code = lib.mrcnn_roi_align_forward_cuda(ctypes.byref(problem), _pointer_array(map(cuda.to_device, levels)),
                                            ctypes.c_void_p(cuda.to_device(boxes)), ctypes.c_void_p(crops), None)
    cuda.check(code, "mrcnn_roi_align_forward_cuda")
    return cuda.to_host(crops, shape)


def cuda_backward(lib, cuda, grad, levels, boxes, problem: Problem) -> List[np.ndarray]:
    """Level gradients from the CUDA backward kernel."""
    outputs = [cuda.empty(level.shape) for level in levels]
    code = lib.mrcnn_roi_align_backward_cuda(ctypes.byref(problem), ctypes.c_void_p(cuda.to_device(grad)),
                                             ctypes.c_void_p(cuda.to_device(boxes)), _pointer_array(outputs), None)
    cuda.check(code, "mrcnn_roi_align_backward_cuda")
    return [cuda.to_host(pointer, level.shape) for pointer, level in zip(outputs, levels)]


def max_error(got, want) -> float:
    return max((float(np.abs(g - w).max()) if np.size(w) else 0.0) for g, w in zip(got, want))


def run(lib, cuda) -> List[Tuple[str, float, float]]:
    """``(case, max |CUDA - reference|, tolerance)`` for every case, forward and backward."""
    levels, boxes = make_inputs()
    results = []
    for size, ratio, aligned in CASES:
        kwargs = dict(output_size=size, sampling_ratio=ratio, aligned=aligned, min_level=LEVELS[0])
        problem = make_problem(levels, boxes, size, ratio, aligned)
        tag = f"R={size} s={ratio} aligned={aligned}"
        crops = cuda_forward(lib, cuda, levels, boxes, problem)
        results.append((f"forward  {tag}", max_error([crops], [roi_align_reference.forward(levels, boxes, **kwargs)]),
                        1e-4))
        grad = np.random.default_rng(size).standard_normal(crops.shape).astype(np.float32)
        got = cuda_backward(lib, cuda, grad, levels, boxes, problem)
        want = roi_align_reference.backward(grad, levels, boxes, **kwargs)
        results.append((f"backward {tag}", max_error(got, want), 1e-3))
    empty = np.zeros((2, 0, 4), np.float32)
    problem = make_problem(levels, empty, 7, 2, False)
    got = cuda_backward(lib, cuda, np.zeros((2, 0, 7, 7, levels[0].shape[-1]), np.float32), levels, empty, problem)
    results.append(("backward N=0 zeroes the gradients", max_error(got, [np.zeros_like(l) for l in levels]), 0.0))
    return results
