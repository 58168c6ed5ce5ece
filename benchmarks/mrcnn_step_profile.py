"""Where the Mask R-CNN training step's time goes: per-stage timings of the CI recipe's step.

The CI convergence recipe (``scripts/convergence_check.py``'s ``CI_RECIPE``: batch 4, 256 px shapes,
ResNet-50 width 0.25, FPN/RPN 128 channels, 64 RoIs per image, Adam, clip 5) built exactly as
``main.py train`` builds it, on one real batch of its data. The full step (``TrainStep.update``: forward,
backward, clipping, Adam) is timed, then each stage alone as its own ``tf.function`` on that batch, with
its inputs computed once beforehand (forward + backward where the stage has weights or passes gradients):

| stage | what runs |
|---|---|
| backbone + FPN | ResNet-50 + FPN forward and backward (the gradient of a stand-in loss) |
| RPN head | the 3x3 conv + objectness/delta convs on P2-P6, forward and backward |
| anchor targets | IoU of every anchor with the GT, matching, sampling 256 anchors per image |
| proposals | decode, top-k per level, NMS (training counts) |
| RoI sampling | proposal-GT IoU, 64 RoIs per image, box targets |
| RoIAlign | box (7x7) and mask (14x14) crops of P2-P5, forward and backward to the features |
| heads | box head (2 fc) + mask head (4 conv + deconv), forward and backward |
| mask targets | GT masks cropped and resized to 28x28 per fg RoI |
| losses | the five losses from the outputs, forward and backward to the logits |
| optimizer | gradient clipping + Adam on precomputed gradients |
| data | one batch from the input pipeline |

The stages overlap in no way; their sum minus the full step is what fusion / scheduling saves (negative)
or what the full step spends beyond its parts (positive: overhead)::

    python benchmarks/mrcnn_step_profile.py --repeats 10 --out benchmarks/mrcnn_step_profile_cpu.json
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.command.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()
import tensorflow as tf  # noqa: E402


def _median_ms(fn, repeats: int) -> float:
    """Median wall ms of ``fn()`` (blocking) after two warm-up calls."""
    for _ in range(2):
        _block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def _block(value):
    for t in tf.nest.flatten(value):
        if hasattr(t, "numpy"):
            t.numpy()


def _build(work: str):
    """``(trainer, task, model, batch, dataset iterator)`` of the CI recipe, as ``main.py train`` builds it."""
    from common.command import cli, commands
    from common.training.trainer import Trainer
    from dataset.make_synthetic_shapes import make_dataset
    from scripts.convergence_check import CI_RECIPE, train_argv

    recipe = CI_RECIPE
    data = make_dataset(os.path.join(work, "data"), num_train=recipe.num_train, num_val=8,
                        image_size=recipe.image_size, seed=recipe.data_seed)["root"]
    invocation = cli.parse(train_argv(recipe, data, os.path.join(work, "run")))
    run, task, experiment = commands._start(invocation)
    family = invocation.family
    model = family.build_model(experiment, task)
    steps = task.steps_per_epoch(experiment.trainer.batch_size) or recipe.steps_per_epoch
    optimizer = family.build_optimizer(experiment, experiment.trainer.batch_size, steps)
    trainer = Trainer(task, model, optimizer, experiment.trainer, run.logger, strategy=run.strategy)
    iterator = iter(task.build_train_dataset(experiment.trainer.batch_size, 0))
    batch = next(iterator)
    trainer.train_step(batch)  # builds every variable and the optimizer slots
    return trainer, task, model, batch, iterator


def _stages(task, model, batch):
    """``{stage: zero-argument tf.function}`` on the batch (see the module docstring)."""
    from mrcnn_tf2.modeling.mask_rcnn import BACKBONE_MAX_LEVEL  # noqa: F401  (same module as the model)
    from mrcnn_tf2.ops import mask_targets as mask_targets_lib
    from mrcnn_tf2.ops.proposals import generate_proposals
    from mrcnn_tf2.task import compute_losses

    features_in, labels = batch
    inputs = {**features_in, **labels}
    images, config = inputs["images"], model.config
    features = model.fpn(model.backbone(images, training=True))
    rpn_scores, rpn_deltas = model.rpn_head(features)
    anchors = model.anchors(images)
    proposals = generate_proposals(rpn_scores, rpn_deltas, anchors, inputs["image_info"],
                                   **config.rpn.proposal_args(True))
    rpn_targets, roi_targets = model._sample_targets(anchors, proposals, inputs)
    fg_rois = roi_targets.rois[:, :model.num_mask_slots]
    fg_gt = roi_targets.gt_indices[:, :model.num_mask_slots]
    box_crops = model._roi_features(features, roi_targets.rois, mask=False)
    mask_crops = model._roi_features(features, fg_rois, mask=True)
    outputs = model(inputs, training=True)

    def backbone_fpn():
        with tf.GradientTape() as tape:
            out = model.fpn(model.backbone(images, training=True))
            loss = tf.add_n([tf.reduce_mean(f) for f in out.values()])
        return tape.gradient(loss, model.backbone.trainable_variables + model.fpn.trainable_variables)

    def rpn_head():
        with tf.GradientTape() as tape:
            tape.watch(list(features.values()))
            scores, deltas = model.rpn_head(features)
            loss = tf.add_n([tf.reduce_mean(s) for s in scores.values()] + [tf.reduce_mean(d) for d in deltas.values()])
        return tape.gradient(loss, model.rpn_head.trainable_variables + list(features.values()))

    def roi_align():
        with tf.GradientTape() as tape:
            tape.watch(list(features.values()))
            loss = tf.reduce_mean(model._roi_features(features, roi_targets.rois, mask=False)) + \
                tf.reduce_mean(model._roi_features(features, fg_rois, mask=True))
        return tape.gradient(loss, list(features.values()))

    def heads():
        with tf.GradientTape() as tape:
            tape.watch([box_crops, mask_crops])
            logits, deltas = model.box_head(box_crops)
            masks = model.mask_head(mask_crops)
            loss = tf.reduce_mean(logits) + tf.reduce_mean(deltas) + tf.reduce_mean(masks)
        return tape.gradient(loss, model.box_head.trainable_variables + model.mask_head.trainable_variables +
                             [box_crops, mask_crops])

    def losses():
        watched = [outputs["class_logits"], outputs["box_deltas"], outputs["mask_logits"],
                   *outputs["rpn_scores"].values(), *outputs["rpn_deltas"].values()]
        with tf.GradientTape() as tape:
            tape.watch(watched)
            total = tf.add_n(list(compute_losses(outputs, config).values()))
        return tape.gradient(total, watched)

    return {
        "backbone + FPN": backbone_fpn,
        "RPN head": rpn_head,
        "anchor targets": lambda: model._sample_targets(anchors, proposals, inputs)[0],
        "proposals": lambda: generate_proposals(rpn_scores, rpn_deltas, anchors, inputs["image_info"],
                                                **config.rpn.proposal_args(True)),
        "RoI sampling + anchor targets": lambda: model._sample_targets(anchors, proposals, inputs),
        "RoIAlign": roi_align,
        "heads": heads,
        "mask targets": lambda: mask_targets_lib.mask_targets(inputs["gt_masks"], inputs["gt_boxes"], fg_rois, fg_gt,
                                                              output_size=config.mask_head.resolution),
        "losses": losses,
    }


def _optimizer_stage(trainer):
    """Clipping + the optimizer update on fixed gradients (the variables move; timing only)."""
    model, optimizer = trainer.model, trainer.optimizer
    grads = [tf.zeros_like(v) + 1e-8 for v in model.trainable_variables]
    clip = trainer.config.clip_grad_norm

    @tf.function
    def update():
        clipped, _ = tf.clip_by_global_norm(grads, clip) if clip else (grads, None)
        optimizer.apply_gradients(zip(clipped, model.trainable_variables))
        return optimizer.iterations

    return update


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        trainer, task, model, batch, iterator = _build(work)
        rows = {"full step (TrainStep.update)": _median_ms(lambda: trainer.train_step(batch)["loss"], args.repeats)}
        for name, fn in _stages(task, model, batch).items():
            rows[name] = _median_ms(tf.function(fn), args.repeats)
        rows["optimizer (clip + Adam)"] = _median_ms(_optimizer_stage(trainer), args.repeats)
        rows["data (next batch)"] = _median_ms(lambda: next(iterator), args.repeats)
    anchors_only, sampling = rows["anchor targets"], rows.pop("RoI sampling + anchor targets")
    rows["RoI sampling"] = sampling - anchors_only
    full = rows["full step (TrainStep.update)"]
    parts = sum(v for k, v in rows.items() if k not in ("full step (TrainStep.update)", "data (next batch)"))
    print("| stage | ms | share of the full step |\n|---|---|---|")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.1f} | {100 * ms / full:.0f} % |")
    print(f"| sum of the stages (without data) | {parts:.1f} | {100 * parts / full:.0f} % |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cpus": os.cpu_count(), "repeats": args.repeats, "ms": rows, "sum_of_stages_ms": parts}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
