"""Mask R-CNN evaluation benchmark: validation img/s of a trained run and COCO-metric seconds per API.

Loads a trained Mask R-CNN workspace (e.g. the demo's ``mask-rcnn`` run), runs its validation split
through the same ``Validator`` as ``main.py eval`` at each ``--score-thresholds`` value (the mask head
runs only on detections above it), and reports ``val.total_ips`` (images / wall s: model, mask pasting,
COCO result entries) with the mean detections per image. Then it times the COCO metrics of the last
run's results with faster-coco-eval and with pycocotools (``--repeats`` each, median).

``--code-root`` runs another checkout's code (e.g. the previous commit in a ``git worktree``) with this
script, so old and new are measured in one session on the same machine state; COCO-API timing needs
this commit's ``CocoEvaluator(evaluator=...)`` and is skipped for code without it::

    python benchmarks/mrcnn_eval_benchmark.py --workspace demo_out/mask-rcnn --data-dir demo_out/coco_shapes
    python benchmarks/mrcnn_eval_benchmark.py --code-root /tmp/old --workspace ... --data-dir ...
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", required=True, help="a trained Mask R-CNN run (config.json + checkpoint)")
    parser.add_argument("--data-dir", required=True, help="its data (COCO layout with a val split)")
    parser.add_argument("--score-thresholds", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="COCO-metric timings per API")
    parser.add_argument("--code-root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        help="checkout whose code runs (default: this one)")
    parser.add_argument("--out", help="append the result rows (JSON lines) to this file")
    return parser.parse_args(argv)


def _validate(threshold: float, args, workspace: str):
    """``(metrics, val img/s, detections per image, evaluator)`` of one validation pass at ``threshold``."""
    from common.command import cli, commands
    from common.training.trainer import Trainer

    argv = ["eval", "--workspace", workspace, "--data-dir", args.data_dir, "--eval-batch-size",
            str(args.batch_size), "--config", f"detection.score_threshold={threshold}"]
    invocation = cli.parse(argv)
    run, task, experiment = commands._start(invocation)
    checkpoint = commands.find_checkpoint(None, workspace)
    with run.strategy.scope():
        model = invocation.family.load_model(experiment, checkpoint)
    trainer = Trainer(task, model, None, experiment.trainer, run.logger, strategy=run.strategy)
    trainer.validator.run(args.batch_size, "warmup")  # traces the step, builds the pipeline and the evaluator
    start = time.perf_counter()
    metrics = trainer.validator.run(args.batch_size, "val")
    wall = time.perf_counter() - start
    evaluator = task.evaluator
    images = len(evaluator._image_ids)
    return metrics, images / wall, len(evaluator.results()) / max(images, 1), evaluator


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.code_root))
    from common.command.runtime import quiet_tensorflow

    quiet_tensorflow()
    rows, evaluator = [], None
    workspace = os.path.join(tempfile.mkdtemp(prefix="eval-bench-"), "run")
    shutil.copytree(args.workspace, workspace)  # its DLLogger file gets the eval lines, not the original's
    for threshold in args.score_thresholds:
        metrics, ips, per_image, evaluator = _validate(threshold, args, workspace)
        row = {"code_root": args.code_root, "score_threshold": threshold, "eval_img_per_s": round(ips, 3),
               "detections_per_image": round(per_image, 1), "bbox/AP50": round(metrics["val.bbox/AP50"], 4),
               "segm/AP50": round(metrics["val.segm/AP50"], 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if evaluator is not None and hasattr(evaluator, "evaluator"):
        rows.append(_time_coco_apis(evaluator, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


def _time_coco_apis(evaluator, repeats: int) -> dict:
    """Median seconds of ``evaluate()`` (bbox + segm) per COCO API on the same results."""
    from mrcnn_tf2.evaluation import CocoEvaluator

    row = {"coco_eval_images": len(evaluator._image_ids), "coco_eval_results": len(evaluator.results())}
    values = {}
    for api in ("faster-coco-eval", "pycocotools"):
        other = CocoEvaluator(evaluator.coco_gt.dataset, include_masks=evaluator.include_masks, evaluator=api)
        other._results, other._image_ids = list(evaluator.results()), set(evaluator._image_ids)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            values[api] = other.evaluate()
            seconds.append(time.perf_counter() - start)
        row[f"{api}_s"] = round(statistics.median(seconds), 3)
    row["max_metric_delta"] = max(abs(values["faster-coco-eval"][k] - values["pycocotools"][k]) for k in values["pycocotools"])
    return row


if __name__ == "__main__":
    sys.exit(main())
