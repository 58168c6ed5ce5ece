"""Fused custom ops vs their plain-TF fallbacks on CPU, forward and forward+backward.

    python benchmarks/custom_ops_benchmark.py                       # all cases -> custom_ops_cpu.json
    python benchmarks/custom_ops_benchmark.py --cases roi_align_7x7 --repeats 5

Each case is a :class:`Case` in :data:`CASES`: a name, the custom-op library it needs,
an input builder, the fused and the plain function (same arguments), and the inputs
to differentiate for the forward+backward timing (empty: forward only). To benchmark
another op, write its builder and add ``register(Case(...))`` below the ROIAlign ones.
Both paths run as ``tf.function``; the time is the median of ``--repeats`` calls after
``--warmup`` calls. A case whose library is unavailable is reported as skipped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import tensorflow as tf  # noqa: E402

from custom_ops import loader  # noqa: E402
from custom_ops.box_matcher import ops as box_matcher_ops  # noqa: E402
from custom_ops.proposals import ops as proposals_ops  # noqa: E402
from custom_ops.roi_align import ops as roi_align_ops  # noqa: E402
from mrcnn_tf2.config import DEFAULT_IMAGE_SIZE  # noqa: E402
from mrcnn_tf2.ops import box_ops, matcher  # noqa: E402
from mrcnn_tf2.ops import proposals as plain_proposals  # noqa: E402
from mrcnn_tf2.ops import roi_align as plain_roi_align  # noqa: E402
from mrcnn_tf2.ops.anchors import AnchorGenerator  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "benchmarks", "custom_ops_cpu.json")
IMAGE_SIZE = DEFAULT_IMAGE_SIZE
LEVELS = (2, 3, 4, 5)  # P2..P5: 208x336, 104x168, 52x84, 26x42


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark: ``fused(*args)`` vs ``plain(*args)`` on ``make_inputs(rng)``.

    Attributes:
      name: case name (CLI ``--cases``).
      library: custom-op library the fused path needs (``custom_ops/<library>``).
      make_inputs: ``rng -> (args, wrt)``: call arguments and the tensors of ``args`` to
        differentiate for forward+backward (empty: forward only).
      fused: the custom-op function.
      plain: the plain-TF function.
      description: sizes, for the report.
    """

    name: str
    library: str
    make_inputs: Callable[[np.random.Generator], tuple]
    fused: Callable[..., tf.Tensor]
    plain: Callable[..., tf.Tensor]
    description: str = ""


CASES: Dict[str, Case] = {}


def register(case: Case) -> Case:
    """Adds ``case`` to :data:`CASES`."""
    CASES[case.name] = case
    return case


# ---------------------------------------------------------------- multilevel ROIAlign
def fpn_features(rng: np.random.Generator, channels: int = 256, batch: int = 1) -> List[tf.Tensor]:
    """P2..P5 of an 832x1344 image: ``[B, 832 / 2**l, 1344 / 2**l, C]`` float32."""
    return [tf.constant(rng.standard_normal((batch, IMAGE_SIZE[0] >> l, IMAGE_SIZE[1] >> l, channels),
                                            dtype=np.float32)) for l in LEVELS]


def random_rois(rng: np.random.Generator, num: int = 1000, batch: int = 1) -> tf.Tensor:
    """``[B, num, 4]`` boxes with log-uniform sides 16..700 px inside the image (all levels used)."""
    sides = np.exp(rng.uniform(np.log(16.0), np.log(700.0), (batch, num, 2)))
    corner = rng.uniform(0.0, 1.0, (batch, num, 2)) * (np.array(IMAGE_SIZE) - sides)
    return tf.constant(np.concatenate([corner, corner + sides], axis=-1).astype(np.float32))


def roi_align_inputs(rng: np.random.Generator):
    """``([features, boxes], wrt=features)``."""
    features = [tf.Variable(f) for f in fpn_features(rng)]
    return [features, random_rois(rng)], features


def roi_align_case(output_size: int) -> Case:
    """Multilevel ROIAlign, ``output_size`` bins, sampling ratio 2, legacy geometry (model default)."""

    def fused(features, boxes):
        return roi_align_ops.multilevel_roi_align(features, boxes, output_size, 2, False, LEVELS[0])

    def plain(features, boxes):
        return plain_roi_align.plain_multilevel_roi_align(dict(zip(LEVELS, features)), boxes, output_size, 2,
                                                          False, LEVELS[0], LEVELS[-1])

    return Case(f"roi_align_{output_size}x{output_size}", roi_align_ops.LIBRARY, roi_align_inputs, fused, plain,
                f"P2..P5 of 832x1344, C=256, B=1, 1000 RoIs, {output_size}x{output_size}, s=2")


register(roi_align_case(7))
register(roi_align_case(14))


# ---------------------------------------------------------------- RPN proposals
ANCHOR_GENERATOR = AnchorGenerator()  # P2..P6, 3 anchors per location: 279,279 anchors at 832x1344
PROPOSAL_ARGS = dict(pre_nms_topk=2000, post_nms_topk=1000, nms_threshold=0.7, min_size=0.0,
                     weights=(1.0, 1.0, 1.0, 1.0))


def proposal_inputs(batch: int):
    """``rng -> ([scores, deltas, anchors, image_info], wrt=[])`` at 832x1344, training settings."""

    def make(rng: np.random.Generator):
        scores, deltas = {}, {}
        for level in ANCHOR_GENERATOR.levels:
            h, w = ANCHOR_GENERATOR.feature_size(IMAGE_SIZE, level)
            scores[level] = tf.constant(rng.normal(0, 2, (batch, h, w, 3)).astype(np.float32))
            deltas[level] = tf.constant(rng.normal(0, 0.3, (batch, h, w, 12)).astype(np.float32))
        anchors = ANCHOR_GENERATOR(IMAGE_SIZE)
        info = tf.constant([[*IMAGE_SIZE, 1.0, *IMAGE_SIZE]] * batch, tf.float32)
        return [scores, deltas, anchors, info], []

    return make


def proposals_case(batch: int) -> Case:
    """Fused proposal generation vs the plain-TF graph (top-k, decode, clip, NMS per level, merge)."""

    def fused(scores, deltas, anchors, info):
        return proposals_ops.generate_proposals(scores, deltas, anchors, info, **PROPOSAL_ARGS)

    def plain(scores, deltas, anchors, info):
        return tuple(plain_proposals.plain_generate_proposals(scores, deltas, anchors, info, **PROPOSAL_ARGS))

    return Case(f"proposals_b{batch}", "proposals", proposal_inputs(batch), fused, plain,
                f"P2..P6 of 832x1344, A=3 (279,279 anchors), B={batch}, pre-NMS 2000/level, NMS 0.7, "
                "post-NMS 1000")


register(proposals_case(1))
register(proposals_case(2))


# ---------------------------------------------------------------- IoU + matching (RPN anchors)
def anchor_match_inputs(batch: int, num_gt: int = 100):
    """``rng -> ([anchors [1, N, 4], gt_boxes [B, M, 4]], wrt=[])``: all anchors, M valid GT boxes."""

    def make(rng: np.random.Generator):
        anchors = ANCHOR_GENERATOR.concatenated(IMAGE_SIZE)[None]
        sides = np.exp(rng.uniform(np.log(16.0), np.log(600.0), (batch, num_gt, 2)))
        corner = rng.uniform(0.0, 1.0, (batch, num_gt, 2)) * (np.array(IMAGE_SIZE) - sides)
        gt = tf.constant(np.concatenate([corner, corner + sides], axis=-1).astype(np.float32))
        return [anchors, gt], []

    return make


def box_matcher_case(batch: int) -> Case:
    """Fused IoU + argmax + low-quality matching vs ``match(box_ops.iou(...))`` (RPN settings)."""
    settings = dict(high=0.7, low=0.3, allow_low_quality=True)

    def fused(anchors, gt):
        return box_matcher_ops.match_boxes(anchors, gt, None, **settings)

    def plain(anchors, gt):
        return tuple(matcher.match(box_ops.iou(anchors, gt), **settings))

    return Case(f"box_matcher_rpn_b{batch}", "box_matcher", anchor_match_inputs(batch), fused, plain,
                f"279,279 anchors of 832x1344 x 100 GT boxes, B={batch}, thresholds 0.7/0.3, low-quality matches")


register(box_matcher_case(1))
register(box_matcher_case(2))


# ---------------------------------------------------------------- timing
def forward_backward(fn: Callable, wrt: Sequence[tf.Variable]) -> Callable:
    """``tf.function``: ``fn(*args)`` and its gradients w.r.t. ``wrt`` (upstream gradient of ones)."""

    @tf.function
    def step(*args):
        with tf.GradientTape() as tape:
            out = fn(*args)
        return tape.gradient(out, list(wrt), output_gradients=tf.ones_like(out))

    return step


def median_ms(fn: Callable, args, warmup: int, repeats: int) -> Tuple[float, float]:
    """Median wall time and median process CPU time (ms) of ``fn(*args)``, outputs fetched to host.

    The CPU time (all threads) is the steadier number on a shared machine.
    """
    for _ in range(warmup):
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def run_case(case: Case, warmup: int, repeats: int, seed: int = 0) -> List[dict]:
    """Rows ``{case, mode, fused_ms, plain_ms, speedup}`` for forward (and forward+backward)."""
    if loader.load(case.library) is None:
        return [{"case": case.name, "skipped": f"custom op '{case.library}' unavailable"}]
    args, wrt = case.make_inputs(np.random.default_rng(seed))
    modes = {"forward": (tf.function(case.fused), tf.function(case.plain))}
    if wrt:
        modes["forward+backward"] = (forward_backward(case.fused, wrt), forward_backward(case.plain, wrt))
    rows = []
    for mode, (fused, plain) in modes.items():
        (fused_ms, fused_cpu), (plain_ms, plain_cpu) = (median_ms(f, args, warmup, repeats) for f in (fused, plain))
        rows.append({"case": case.name, "mode": mode, "description": case.description,
                     "fused_ms": round(fused_ms, 2), "plain_ms": round(plain_ms, 2),
                     "speedup": round(plain_ms / fused_ms, 2), "fused_cpu_ms": round(fused_cpu, 2),
                     "plain_cpu_ms": round(plain_cpu, 2), "cpu_speedup": round(plain_cpu / fused_cpu, 2)})
        print(f"{case.name:<18} {mode:<17} fused {fused_ms:9.1f} ms   plain {plain_ms:9.1f} ms   "
              f"x{plain_ms / fused_ms:.2f}   (CPU time x{plain_cpu / fused_cpu:.2f})", flush=True)
    return rows


def environment() -> dict:
    """Machine and library versions for the JSON report."""
    return {"tensorflow": tf.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "device": "CPU"}


def write_report(path: str, rows: List[dict]) -> None:
    """Writes ``rows`` to the JSON report, keeping the rows of cases not run this time."""
    kept = []
    if os.path.exists(path):
        with open(path) as handle:
            kept = [row for row in json.load(handle).get("results", [])
                    if row["case"] not in {new["case"] for new in rows}]
    with open(path, "w") as handle:
        json.dump({"environment": environment(), "results": kept + rows}, handle, indent=2)
        handle.write("\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=None, choices=sorted(CASES), help="default: all")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON report ('' to skip)")
    args = parser.parse_args(argv)
    rows = [row for name in (args.cases or list(CASES)) for row in run_case(CASES[name], args.warmup, args.repeats)]
    if args.out:
        write_report(args.out, rows)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
