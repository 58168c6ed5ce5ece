"""Standalone CUDA harness of the fused proposal generation (no TensorFlow): CUDA vs a NumPy reference.

Run on a machine with a GPU and nvcc (from the repository root)::

    python -m custom_ops.harness.proposals_harness            # edge cases + 832x1344, B=1 and 2
    python -m custom_ops.harness.proposals_harness --quick    # edge cases only

It compiles ``custom_ops/proposals/proposals_cuda.cu`` with nvcc, calls the C ABI of
``proposals_cuda.h`` through ctypes and compares every output with :func:`reference`,
a float32 NumPy transcription of ``mrcnn_tf2/ops/proposals.py`` (top-k with ties by
lower index, decode, clip, min size, greedy NMS with TensorFlow's IoU, merge). Exit
status 1 on any mismatch. Boxes may differ by float rounding of ``exp`` (1e-3 px).
"""
from __future__ import annotations

import argparse
import ctypes
import math
import os
import sys
import tempfile
import time
from typing import Dict, List, NamedTuple

import numpy as np

from custom_ops.harness.cuda_runtime import CudaRuntime, build_shared_library

SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "proposals", "proposals_cuda.cu")
CLIP = np.float32(math.log(1000.0 / 16.0))
LEVELS = (2, 3, 4, 5, 6)


class Problem(NamedTuple):
    """One harness input: per-level ``scores [B, N_l]``, ``deltas [B, N_l, 4]``, ``anchors [N_l, 4]``."""

    scores: List[np.ndarray]
    deltas: List[np.ndarray]
    anchors: List[np.ndarray]
    image_info: np.ndarray  # [B, 5]
    pre: int
    post: int
    threshold: float
    min_size: float = 0.0


def make_anchors(image_size, level: int, anchor_scale: float = 8.0) -> np.ndarray:
    """``[H_l * W_l * 3, 4]`` float32 anchors in ``(y, x, a)`` order, aspect ratios 0.5/1/2 (anchors.py)."""
    stride = 2 ** level
    rows, cols = math.ceil(image_size[0] / stride), math.ceil(image_size[1] / stride)
    base = anchor_scale * stride
    sizes = np.array([(base * ay, base * ax) for ax, ay in ((1.4, 0.7), (1.0, 1.0), (0.7, 1.4))]) / 2
    yc = (np.arange(rows) + 0.5)[:, None, None] * stride
    xc = (np.arange(cols) + 0.5)[None, :, None] * stride
    boxes = [np.broadcast_to(v, (rows, cols, 3)) for v in (yc - sizes[:, 0], xc - sizes[:, 1],
                                                          yc + sizes[:, 0], xc + sizes[:, 1])]
    return np.stack(boxes, -1).reshape(-1, 4).astype(np.float32)


def random_problem(rng, image_size, batch: int, pre: int, post: int, threshold: float, levels=LEVELS,
                   anchor_scale: float = 8.0, quantize: bool = False) -> Problem:
    """Random RPN outputs for ``image_size`` (``quantize``: integer logits, many ties)."""
    anchors = [make_anchors(image_size, l, anchor_scale) for l in levels]
    scores = [rng.normal(0, 2, (batch, len(a))).astype(np.float32) for a in anchors]
    if quantize:
        scores = [np.round(s) for s in scores]
    deltas = [rng.normal(0, 0.3, (batch, len(a), 4)).astype(np.float32) for a in anchors]
    info = np.array([[image_size[0] - 7 * b, image_size[1] - 5 * b, 1, 0, 0] for b in range(batch)], np.float32)
    return Problem(scores, deltas, anchors, info.reshape(batch, 5), pre, post, threshold)


# ---------------------------------------------------------------- NumPy reference
def decode(deltas: np.ndarray, anchors: np.ndarray, height, width, min_size: float):
    """``(boxes [k, 4] float32, keep [k] bool)``: box_ops.decode_boxes + clip + valid mask."""
    f = np.float32
    yc_a = (anchors[:, 0] + anchors[:, 2]) * f(0.5)
    xc_a = (anchors[:, 1] + anchors[:, 3]) * f(0.5)
    h_a, w_a = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    yc, xc = deltas[:, 0] * h_a + yc_a, deltas[:, 1] * w_a + xc_a
    half_h = f(0.5) * np.exp(np.minimum(deltas[:, 2], CLIP)) * h_a
    half_w = f(0.5) * np.exp(np.minimum(deltas[:, 3], CLIP)) * w_a
    boxes = np.stack([yc - half_h, xc - half_w, yc + half_h, xc + half_w], -1)
    boxes = np.minimum(np.maximum(boxes, f(0)), np.array([height, width, height, width], np.float32))
    keep = (boxes[:, 2] - boxes[:, 0] > f(min_size)) & (boxes[:, 3] - boxes[:, 1] > f(min_size))
    return boxes.astype(np.float32), keep


def tf_iou(box: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """TensorFlow NMS IoU of one candidate with ``[n, 4]`` kept boxes (float32)."""
    def norm(b):
        return (np.minimum(b[..., 0], b[..., 2]), np.minimum(b[..., 1], b[..., 3]),
                np.maximum(b[..., 0], b[..., 2]), np.maximum(b[..., 1], b[..., 3]))
    y0, x0, y1, x1 = norm(box)
    ky0, kx0, ky1, kx1 = norm(kept)
    area, karea = (y1 - y0) * (x1 - x0), (ky1 - ky0) * (kx1 - kx0)
    inter = (np.maximum(np.minimum(y1, ky1) - np.maximum(y0, ky0), np.float32(0))
             * np.maximum(np.minimum(x1, kx1) - np.maximum(x0, kx0), np.float32(0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area + karea - inter)
    return np.where((area <= 0) | (karea <= 0), np.float32(0), iou)


def greedy_nms(boxes: np.ndarray, logits: np.ndarray, threshold: float, limit: int) -> List[int]:
    """Kept candidate positions (candidates already in visiting order, ``-inf`` skipped)."""
    kept: List[int] = []
    for i in range(len(logits)):
        if len(kept) >= limit:
            break
        if logits[i] == -np.inf:
            continue
        if kept and (tf_iou(boxes[i], boxes[kept]) > np.float32(threshold)).any():
            continue
        kept.append(i)
    return kept


def reference_image(p: Problem, b: int):
    """``(boxes [n, 4], logits [n])`` of image ``b``, best first, ``n <= post``."""
    found = []
    for scores, deltas, anchors in zip(p.scores, p.deltas, p.anchors):
        logits = scores[b].copy()
        logits[logits == 0] = 0.0  # -0 ties +0
        top = np.argsort(-logits, kind="stable")[:min(p.pre, len(logits))]
        boxes, keep = decode(deltas[b][top], anchors[top], p.image_info[b, 0], p.image_info[b, 1], p.min_size)
        cand = np.where(keep, scores[b][top], -np.inf).astype(np.float32)
        found += [(cand[i], boxes[i]) for i in greedy_nms(boxes, cand, p.threshold, min(p.post, len(top)))]
    order = sorted(range(len(found)), key=lambda i: -found[i][0])[:p.post]  # stable: level-major ties
    return (np.array([found[i][1] for i in order], np.float32).reshape(-1, 4),
            np.array([found[i][0] for i in order], np.float32))


def reference(p: Problem) -> Dict[str, np.ndarray]:
    """``{"boxes": [B, P, 4], "scores": [B, P], "valid": [B, P]}`` float32 / bool."""
    batch = len(p.image_info)
    out = {"boxes": np.zeros((batch, p.post, 4), np.float32), "scores": np.zeros((batch, p.post), np.float32),
           "valid": np.zeros((batch, p.post), bool)}
    for b in range(batch):
        boxes, logits = reference_image(p, b)
        n = len(logits)
        out["boxes"][b, :n], out["valid"][b, :n] = boxes, True
        out["scores"][b, :n] = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return out


# ---------------------------------------------------------------- CUDA
def load_library(path: str) -> ctypes.CDLL:
    """The harness library with the C ABI of ``proposals_cuda.h`` typed."""
    lib = ctypes.CDLL(path)
    lib.mrcnn_proposals_cuda_workspace_bytes.restype = ctypes.c_size_t
    lib.mrcnn_proposals_cuda_workspace_bytes.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64),
                                                         ctypes.c_int, ctypes.c_int]
    lib.mrcnn_proposals_cuda.restype = ctypes.c_int
    ptr, arrays = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
    lib.mrcnn_proposals_cuda.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64), arrays, arrays, arrays, ptr, ctypes.c_int,
        ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float, ctypes.POINTER(ctypes.c_float), ptr,
        ctypes.c_size_t, ptr, ptr, ptr, ptr]
    return lib


def run_cuda(lib, cuda: CudaRuntime, p: Problem, repeats: int = 1):
    """``(outputs like reference(), median ms)`` of the CUDA implementation."""
    batch, levels = len(p.image_info), len(p.scores)
    counts = (ctypes.c_int64 * levels)(*[len(a) for a in p.anchors])
    ptrs = lambda arrays: (ctypes.c_void_p * levels)(*[cuda.to_device(a) for a in arrays])  # noqa: E731
    scores, deltas, anchors = ptrs(p.scores), ptrs(p.deltas), ptrs(p.anchors)
    info = cuda.to_device(p.image_info)
    size = lib.mrcnn_proposals_cuda_workspace_bytes(batch, levels, counts, p.pre, p.post)
    workspace = cuda.malloc(size)
    boxes, probs, valid = (cuda.malloc(batch * p.post * n) for n in (16, 4, 1))
    weights = (ctypes.c_float * 4)(1.0, 1.0, 1.0, 1.0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        code = lib.mrcnn_proposals_cuda(
            batch, levels, counts, scores, deltas, anchors, info, p.image_info.shape[1], p.pre, p.post,
            ctypes.c_float(p.threshold), ctypes.c_float(p.min_size), weights, workspace, ctypes.c_size_t(size),
            boxes, probs, valid, None)
        cuda.check(code, "mrcnn_proposals_cuda")
        cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    out = {"boxes": cuda.to_host(boxes, (batch, p.post, 4), np.float32),
           "scores": cuda.to_host(probs, (batch, p.post), np.float32),
           "valid": cuda.to_host(valid, (batch, p.post), np.uint8).astype(bool)}
    cuda.free_all()
    return out, float(np.median(times))


def compare(name: str, got, want) -> bool:
    """Prints one PASS/FAIL line; valid slots must match exactly, values within tolerance."""
    problems = []
    if not np.array_equal(got["valid"], want["valid"]):
        problems.append(f"valid differs in {int((got['valid'] != want['valid']).sum())} slots")
    elif not np.allclose(got["boxes"], want["boxes"], atol=1e-3, rtol=1e-5):
        problems.append(f"boxes max error {np.abs(got['boxes'] - want['boxes']).max():.3g}")
    elif not np.allclose(got["scores"], want["scores"], atol=1e-6, rtol=1e-5):
        problems.append(f"scores max error {np.abs(got['scores'] - want['scores']).max():.3g}")
    print(f"{'PASS' if not problems else 'FAIL'}  {name:<34} valid={int(want['valid'].sum())} {' '.join(problems)}")
    return not problems


def edge_cases(rng) -> Dict[str, Problem]:
    """Small problems: ties, zero-size/outside boxes, tight NMS, padding, an empty level."""
    small = dict(image_size=(64, 96), levels=(2, 3, 4), anchor_scale=2.0)
    cases = {"random": random_problem(rng, batch=2, pre=300, post=200, threshold=0.7, **small),
             "ties": random_problem(rng, batch=2, pre=300, post=200, threshold=0.5, quantize=True, **small),
             "padding": random_problem(rng, batch=3, pre=40, post=400, threshold=0.3, **small)}
    p = random_problem(rng, batch=2, pre=500, post=100, threshold=0.6, **small)
    p.anchors[0][::3, 2] = p.anchors[0][::3, 0]  # zero-height anchors
    p.anchors[1][::2] += 500.0  # outside the image: clipped to zero size
    cases["zero_size_outside"] = p._replace(min_size=2.0)
    p = random_problem(rng, batch=2, pre=100, post=50, threshold=0.7, **small)
    cases["empty_level"] = p._replace(scores=p.scores[:2] + [p.scores[2][:, :0]],
                                      deltas=p.deltas[:2] + [p.deltas[2][:, :0]],
                                      anchors=p.anchors[:2] + [p.anchors[2][:0]])
    cases["nothing_survives"] = random_problem(rng, batch=1, pre=50, post=20, threshold=0.7, **small)._replace(
        min_size=1e6)
    return cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="edge cases only")
    parser.add_argument("--library", default="", help="prebuilt .so (default: build with nvcc)")
    args = parser.parse_args([] if argv is None else argv)
    lib = load_library(args.library or build_shared_library(
        [SOURCE], os.path.join(tempfile.mkdtemp(prefix="mrcnn_harness_"), "proposals.so")))
    cuda, rng = CudaRuntime(), np.random.default_rng(0)
    cases = edge_cases(rng)
    if not args.quick:
        for batch in (1, 2):
            cases[f"832x1344_b{batch}"] = random_problem(rng, (832, 1344), batch, pre=2000, post=1000, threshold=0.7)
    ok = True
    for name, problem in cases.items():
        got, ms = run_cuda(lib, cuda, problem, repeats=5 if name.startswith("832") else 1)
        ok &= compare(f"{name} ({ms:.2f} ms)", got, reference(problem))
    print("all passed" if ok else "FAILURES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
