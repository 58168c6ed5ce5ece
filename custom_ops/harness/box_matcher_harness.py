"""Standalone CUDA harness of the fused IoU matcher (no TensorFlow): CUDA vs a NumPy reference.

Run on a machine with a GPU and nvcc (from the repository root)::

    python -m custom_ops.harness.box_matcher_harness            # edge cases + 279k anchors x 100 GT
    python -m custom_ops.harness.box_matcher_harness --quick    # edge cases only

It compiles ``custom_ops/box_matcher/box_matcher_cuda.cu`` with nvcc, calls the C ABI
of ``box_matcher_cuda.h`` through ctypes and compares with :func:`reference`, a
float32 NumPy transcription of ``matcher.match(box_ops.iou(boxes, gt), ...)`` (same
operations, so IoUs are bit-identical). Outputs must match exactly; exit status 1
otherwise.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
import time
from typing import Dict, NamedTuple

import numpy as np

from custom_ops.harness.cuda_runtime import CudaRuntime, build_shared_library
from custom_ops.harness.proposals_harness import LEVELS, make_anchors

SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "box_matcher",
                      "box_matcher_cuda.cu")


class Problem(NamedTuple):
    """``boxes [1 or B, N, 4]``, ``gt_boxes [B, M, 4]``, ``gt_valid [B, M]`` and the match settings."""

    boxes: np.ndarray
    gt_boxes: np.ndarray
    gt_valid: np.ndarray
    high: float = 0.7
    low: float = 0.3
    allow_low_quality: bool = True


def iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``box_ops.iou`` of ``[N, 4]`` and ``[M, 4]`` in float32: ``[N, M]``."""
    a, g = boxes[:, None, :], gt[None, :, :]
    f0 = np.float32(0)
    inter_hw = np.maximum(np.minimum(a[..., 2:], g[..., 2:]) - np.maximum(a[..., :2], g[..., :2]), f0)
    inter = inter_hw[..., 0] * inter_hw[..., 1]

    def area(b):
        return np.maximum(b[..., 2] - b[..., 0], f0) * np.maximum(b[..., 3] - b[..., 1], f0)

    union = area(a) + area(g) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union == 0, f0, inter / union).astype(np.float32)


def reference(p: Problem) -> Dict[str, np.ndarray]:
    """``{"matched_idx", "labels" [B, N] int32, "max_iou" [B, N] float32}`` as matcher.match."""
    batch, n = p.gt_boxes.shape[0], p.boxes.shape[1]
    out = {"matched_idx": np.zeros((batch, n), np.int32), "labels": np.zeros((batch, n), np.int32),
           "max_iou": np.zeros((batch, n), np.float32)}
    for b in range(batch):
        masked = np.where(p.gt_valid[b][None], iou(p.boxes[b if len(p.boxes) > 1 else 0], p.gt_boxes[b]),
                          np.float32(-1))
        padded = np.concatenate([masked, np.zeros((n, 1), np.float32)], axis=1)
        index = np.argmax(padded, axis=1)  # first maximum, as tf.argmax
        out["matched_idx"][b] = np.where(index < masked.shape[1], index, 0)
        out["max_iou"][b] = padded.max(axis=1)
        labels = np.where(out["max_iou"][b] >= np.float32(p.high), 1,
                          np.where(out["max_iou"][b] < np.float32(p.low), 0, -1))
        if p.allow_low_quality and masked.shape[1] and n:
            best = masked.max(axis=0, keepdims=True)
            labels = np.where(((masked == best) & (best > 0)).any(axis=1), 1, labels)
        out["labels"][b] = labels
    return out


def load_library(path: str) -> ctypes.CDLL:
    """The harness library with the C ABI of ``box_matcher_cuda.h`` typed."""
    lib = ctypes.CDLL(path)
    lib.mrcnn_match_boxes_cuda_workspace_bytes.restype = ctypes.c_size_t
    lib.mrcnn_match_boxes_cuda_workspace_bytes.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.mrcnn_match_boxes_cuda.restype = ctypes.c_int
    ptr = ctypes.c_void_p
    lib.mrcnn_match_boxes_cuda.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int, ptr, ptr, ptr, ctypes.c_float, ctypes.c_float,
        ctypes.c_int, ptr, ctypes.c_size_t, ptr, ptr, ptr, ptr]
    return lib


def run_cuda(lib, cuda: CudaRuntime, p: Problem, repeats: int = 1):
    """``(outputs like reference(), median ms)`` of the CUDA implementation."""
    batch, n, m = p.gt_boxes.shape[0], p.boxes.shape[1], p.gt_boxes.shape[1]
    boxes, gt = cuda.to_device(p.boxes.astype(np.float32)), cuda.to_device(p.gt_boxes.astype(np.float32))
    valid = cuda.to_device(p.gt_valid.astype(np.uint8))
    size = lib.mrcnn_match_boxes_cuda_workspace_bytes(batch, m)
    workspace = cuda.malloc(size)
    matched, labels, max_iou = (cuda.malloc(batch * n * 4) for _ in range(3))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        code = lib.mrcnn_match_boxes_cuda(
            batch, p.boxes.shape[0], ctypes.c_int64(n), m, boxes, gt, valid, ctypes.c_float(p.high),
            ctypes.c_float(p.low), int(p.allow_low_quality), workspace, ctypes.c_size_t(size), matched, labels,
            max_iou, None)
        cuda.check(code, "mrcnn_match_boxes_cuda")
        cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    out = {"matched_idx": cuda.to_host(matched, (batch, n), np.int32),
           "labels": cuda.to_host(labels, (batch, n), np.int32),
           "max_iou": cuda.to_host(max_iou, (batch, n), np.float32)}
    cuda.free_all()
    return out, float(np.median(times))


def compare(name: str, got, want) -> bool:
    """Prints one PASS/FAIL line; every output must be identical."""
    bad = [f"{key}: {int((got[key] != want[key]).sum())} differ" for key in want if not np.array_equal(got[key], want[key])]
    print(f"{'PASS' if not bad else 'FAIL'}  {name:<34} fg={int((want['labels'] == 1).sum())} {' '.join(bad)}")
    return not bad


def random_boxes(rng, shape, extent=100.0, max_size=40.0) -> np.ndarray:
    """``shape + [4]`` float32 boxes."""
    corner = rng.uniform(-10, extent, shape + (2,))
    return np.concatenate([corner, corner + rng.uniform(0, max_size, shape + (2,))], -1).astype(np.float32)


def edge_cases(rng) -> Dict[str, Problem]:
    """Small problems: ties, zero-size/outside/invalid GT, empty sets, Fast R-CNN settings."""
    boxes, gt = random_boxes(rng, (3, 3000)), random_boxes(rng, (3, 10), max_size=60.0)
    valid = rng.random((3, 10)) > 0.3
    cases = {"random": Problem(boxes, gt, valid), "shared_anchors": Problem(boxes[:1], gt, valid),
             "fast_rcnn": Problem(boxes, gt, valid, 0.5, 0.5, False)}
    tied_gt = np.round(gt / 8) * 8
    tied_gt[:, 2] = tied_gt[:, 0]
    cases["ties"] = Problem(np.round(boxes / 8) * 8, tied_gt, np.ones((3, 10), bool))
    odd = gt.copy()
    odd[0, 1], odd[1, 2], odd[2, 3] = [5, 5, 5, 9], -1.0, [50, 50, 40, 40]  # zero-size, padding, inverted
    far = boxes.copy()
    far[:, ::5, 2] = far[:, ::5, 0]
    far[:, 1::7] += 1000.0
    cases["zero_size_outside"] = Problem(far, odd, np.ones((3, 10), bool))
    cases["no_valid_gt"] = Problem(boxes, gt, np.zeros((3, 10), bool))
    cases["no_gt"] = Problem(boxes, gt[:, :0], valid[:, :0])
    return cases


def anchor_problem(rng, batch: int, num_gt: int = 100) -> Problem:
    """All 279,279 anchors of 832x1344 (shared) against ``num_gt`` random GT boxes per image."""
    anchors = np.concatenate([make_anchors((832, 1344), level) for level in LEVELS])[None]
    sides = np.exp(rng.uniform(np.log(16.0), np.log(600.0), (batch, num_gt, 2)))
    corner = rng.uniform(0.0, 1.0, (batch, num_gt, 2)) * (np.array([832, 1344]) - sides)
    gt = np.concatenate([corner, corner + sides], -1).astype(np.float32)
    return Problem(anchors, gt, np.ones((batch, num_gt), bool))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="edge cases only")
    parser.add_argument("--library", default="", help="prebuilt .so (default: build with nvcc)")
    args = parser.parse_args([] if argv is None else argv)
    lib = load_library(args.library or build_shared_library(
        [SOURCE], os.path.join(tempfile.mkdtemp(prefix="mrcnn_harness_"), "box_matcher.so")))
    cuda, rng = CudaRuntime(), np.random.default_rng(0)
    cases = edge_cases(rng)
    if not args.quick:
        cases.update({f"anchors_832x1344_b{b}": anchor_problem(rng, b) for b in (1, 2)})
    ok = True
    for name, problem in cases.items():
        got, ms = run_cuda(lib, cuda, problem, repeats=5 if name.startswith("anchors") else 1)
        ok &= compare(f"{name} ({ms:.2f} ms)", got, reference(problem))
    print("all passed" if ok else "FAILURES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
