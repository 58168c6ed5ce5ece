"""Subprocess side of the distribution tests (TensorFlow's devices are fixed per process).

``python tests/common/dist_helpers.py MODE OUT_JSON [options]``:

* ``mirrored``: 2 logical CPUs; a tiny conv + SyncBatchNorm classifier trained by the
  shared :class:`Trainer` on one device and under MirroredStrategy (same data, same
  global batch), then EfficientNet (the real builder, a narrow five-stage block table) evaluated
  both ways. Writes the max |Δ| of the weights and both sets of metrics.
* ``worker``: one process of a ``--dist multiworker`` run (or the single-process
  reference without ``TF_CONFIG``): trains the tiny classifier, saves its weights.
* ``mrcnn_eval``: 2 logical CPUs; COCO metrics and raw detections of a tiny Mask R-CNN
  on one device and under MirroredStrategy.

Batch-norm is synchronised (``synchronized=True``) in the tiny classifier: with
per-replica statistics a replica normalises its half-batch with its own mean and
variance, which is a different function from single-device training on the whole batch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from common.io.logger import NullLogger  # noqa: E402
from common.training.task import Task  # noqa: E402

NUM_EXAMPLES, SIZE, CLASSES = 32, 8, 4


def two_logical_cpus() -> None:
    """Splits the CPU into two logical devices (before TensorFlow initialises)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


class TinyClassifier(Task):
    """Conv + BatchNorm + Dense on fixed random 8x8 images; seeded shuffle, then shard.

    Sharding *after* a shuffle with a shared seed gives worker ``i`` the examples
    ``i, i + n, ...`` of the global order, so at every step the workers' batches
    together hold exactly the single-process global batch.
    """

    validation_reduction = "sum"

    def __init__(self, sync_bn: bool = True):
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(NUM_EXAMPLES, SIZE, SIZE, 3)).astype(np.float32)
        self.y = rng.integers(0, CLASSES, NUM_EXAMPLES).astype(np.int32)
        self.sync_bn = sync_bn

    def build_model(self):
        return keras.Sequential([
            keras.layers.Conv2D(6, 3, input_shape=(SIZE, SIZE, 3)),
            keras.layers.BatchNormalization(synchronized=self.sync_bn, momentum=0.9),
            keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(CLASSES)])

    def _data(self, global_batch, ctx, seed, training):
        ds = tf.data.Dataset.from_tensor_slices((self.x, self.y))
        if seed is not None:
            ds = ds.shuffle(NUM_EXAMPLES, seed=seed, reshuffle_each_iteration=False)
        if ctx is not None and ctx.num_input_pipelines > 1:
            ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
        batch = ctx.get_per_replica_batch_size(global_batch) if ctx else global_batch
        return ds.batch(batch, drop_remainder=training)

    def build_train_dataset(self, global_batch, epoch, input_context=None):
        return self._data(global_batch, input_context, 10 + epoch, True)

    def build_eval_dataset(self, global_batch, input_context=None):
        return self._data(global_batch, input_context, None, False)

    def train_loss(self, model, batch, training=True):
        x, y = batch
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x, training=training))), {}

    def validation_step(self, model, batch):
        x, y = batch
        logits = model(x, training=False)
        return {"loss": tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)),
                "top1": tf.reduce_sum(tf.cast(tf.nn.in_top_k(y, logits, 1), tf.float32)),
                "count": tf.cast(tf.shape(y)[0], tf.float32)}

    def reduce_validation(self, sums):
        return {"loss": sums["loss"] / sums["count"], "top1": 100.0 * sums["top1"] / sums["count"]}


class TinyConcat(TinyClassifier):
    """The same model evaluated Mask R-CNN style: per-example outputs gathered on the host."""

    validation_reduction = "concat"

    def validation_step(self, model, batch):
        x, y = batch
        return {"loss": tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x, training=False))}

    def begin_validation(self):
        self.losses = []

    def update_validation(self, outputs):
        self.losses.append(outputs["loss"])
        return len(outputs["loss"])

    def reduce_validation(self, sums):
        losses = np.concatenate(self.losses)
        return {"loss": float(np.mean(losses)), "count": float(len(losses))}


def initial_weights(task):
    keras.utils.set_random_seed(0)
    return task.build_model().get_weights()


def train_tiny(strategy, weights, global_batch=8, epochs=2, sync_bn=True, logger=None, workspace=None,
               lr=0.1, eval_every=None, **config):
    """Trains the tiny classifier from ``weights``; returns ``(weights, trainer)``."""
    from common.training.trainer import Trainer, TrainerConfig

    task = TinyClassifier(sync_bn)
    with strategy.scope():
        model = task.build_model()
        model.set_weights(weights)
        optimizer = keras.optimizers.SGD(lr, momentum=0.9)
    cfg = TrainerConfig(epochs=epochs, save_checkpoints=workspace is not None, evaluate=eval_every is not None,
                        eval_every=eval_every, weight_decay=1e-3, log_every=1, **config)
    trainer = Trainer(task, model, optimizer, cfg, logger or NullLogger(), strategy=strategy, workspace=workspace)
    trainer.fit(global_batch, eval_batch=6)
    return model.get_weights(), trainer


def max_diff(a, b) -> float:
    return float(max(np.max(np.abs(x - y)) for x, y in zip(a, b)))


# --------------------------------------------------------------------------- modes
def run_mirrored(out):
    """Tiny classifier (sync BN, clipping, weight decay) and EfficientNet eval, 1 vs 2 replicas."""
    two_logical_cpus()
    single, mirrored = tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": mirrored.num_replicas_in_sync}
    start = initial_weights(TinyClassifier())
    ref, ref_trainer = train_tiny(single, start, clip_grad_norm=0.5)
    got, got_trainer = train_tiny(mirrored, start, clip_grad_norm=0.5)
    result["train_max_abs_diff"] = max_diff(ref, got)
    result["steps"] = [int(ref_trainer.optimizer.iterations.numpy()), int(got_trainer.optimizer.iterations.numpy())]
    result["weights_moved"] = max_diff(ref, start)
    result["tiny_eval"] = [ref_trainer.evaluate(6), got_trainer.evaluate(6)]
    unsynced, _ = train_tiny(mirrored, start, sync_bn=False, epochs=1)
    result["unsynced_bn_max_abs_diff"] = max_diff(train_tiny(single, start, epochs=1)[0], unsynced)
    # Accumulation: BN statistics are per micro-batch, so compare with accumulation on one device.
    accum, _ = train_tiny(mirrored, start, global_batch=4, grad_accum_steps=2, epochs=1)
    plain, _ = train_tiny(single, start, global_batch=4, grad_accum_steps=2, epochs=1)
    result["accum_max_abs_diff"] = max_diff(plain, accum)
    result["efficientnet_eval"] = efficientnet_eval(single, mirrored, out["data"])
    return result


def efficientnet_eval(single, mirrored, data_dir):
    """val.loss/top1/top5 of a five-stage, narrow EfficientNet (random weights) on 9 images, both ways."""
    from common.training.trainer import Trainer, TrainerConfig
    from efficientnet_tf2.experiments import classifier_config
    from efficientnet_tf2.task import ClassificationConfig, ImageClassificationTask

    blocks = ("ds_r1_k3_s1_e1_c8_se0.25",) + tuple(f"ir_r1_k3_s2_e2_c{c}_se0.25" for c in (8, 16, 16, 24))
    model = classifier_config("efficientnet-b0", blocks=blocks, head_filters=32)
    task = ImageClassificationTask(ClassificationConfig(data_dir=data_dir, num_classes=3, image_size=32,
                                                       augment="none", model_config=model))
    keras.utils.set_random_seed(0)
    weights = task.build_model().get_weights()
    metrics = []
    for strategy in (single, mirrored):
        with strategy.scope():
            model = task.build_model()
            model.set_weights(weights)
        trainer = Trainer(task, model, None, TrainerConfig(), NullLogger(), strategy=strategy)
        metrics.append({k: v for k, v in trainer.evaluate(4).items() if k in ("val.loss", "val.top1", "val.top5")})
    return metrics


def run_worker(out):
    """One multi-worker process (or the single-process reference): trains, saves weights."""
    from common.training import distribution
    from common.io.logger import setup_logger
    from common.training.trainer import Trainer, TrainerConfig

    strategy = distribution.create_strategy("auto")
    chief = distribution.is_chief(strategy)
    index = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
    per_replica = out["global_batch"] // (strategy.num_replicas_in_sync)
    global_batch = distribution.global_batch_size(per_replica, strategy)
    lr = distribution.scale_learning_rate(0.025, global_batch, reference_batch=2)
    logger = setup_logger(log_file=os.path.join(out["workspace"], "raport.json"), is_chief=chief)
    logger.log("PARAMETER", {"global_batch": global_batch, "lr": lr, "replicas": strategy.num_replicas_in_sync})
    weights, trainer = train_tiny(strategy, initial_weights(TinyClassifier()), global_batch=global_batch,
                                  logger=logger, workspace=out["workspace"], lr=lr,
                                  clip_grad_norm=0.5, eval_every=1)
    logger.flush()
    np.savez(os.path.join(out["out_dir"], f"weights_{index}.npz"), *weights)
    concat = Trainer(TinyConcat(), trainer.model, None, TrainerConfig(), NullLogger(),
                     strategy=strategy)
    return {"index": index, "chief": chief, "replicas": strategy.num_replicas_in_sync,
            "global_batch": global_batch, "lr": lr, "eval": trainer.evaluate(6), "concat_eval": concat.evaluate(6)}


def run_mrcnn_eval(out):
    """COCO metrics and detections of a tiny random Mask R-CNN, one device vs 2 replicas."""
    two_logical_cpus()
    from common.training.trainer import Trainer, TrainerConfig
    from mrcnn_tf2.config import MaskRCNNConfig
    from mrcnn_tf2.data.inputs import InputConfig
    from mrcnn_tf2.data.sources import resolve_sources
    from mrcnn_tf2.task import DetectionTaskConfig, InstanceSegmentationTask

    data = resolve_sources(out["data"], need_train=False)
    inputs = InputConfig(image_size=(64, 64), flip=False)
    config = MaskRCNNConfig().override(**{"num_classes": data.num_classes, "image_size": inputs.batch_padded_size(),
                                          **out["tiny"]})
    class RecordingTask(InstanceSegmentationTask):
        """Keeps every image's detections (by source id) besides the COCO evaluation."""

        def update_validation(self, outputs):
            for i, source_id in enumerate(outputs["source_ids"]):
                self.seen[int(source_id)] = [outputs[k][i] for k in ("detection_boxes", "detection_scores",
                                                                      "detection_classes", "detection_masks")]
            return super().update_validation(outputs)

    task = RecordingTask(DetectionTaskConfig(config, inputs, data, seed=0))
    weights = task.build_model().get_weights()
    results, seen = [], []
    for strategy in (tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
        with strategy.scope():
            model = task.build_model()
            model.set_weights(weights)
        task.seen = {}
        trainer = Trainer(task, model, None, TrainerConfig(), NullLogger(), strategy=strategy)
        results.append(trainer.evaluate(2))
        seen.append(task.seen)
    diff = max(max_diff(seen[0][k], seen[1][k]) for k in seen[0])
    return {"metrics": [{k: v for k, v in r.items() if "/" in k} for r in results],
            "images": [sorted(s) for s in seen], "detections_max_abs_diff": diff,
            "max_score": float(max(np.max(v[1]) for v in seen[0].values()))}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("mirrored", "worker", "mrcnn_eval"))
    parser.add_argument("out_json")
    parser.add_argument("--options", default="{}", help="JSON dict of mode options")
    args = parser.parse_args()
    options = json.loads(args.options)
    result = {"mirrored": run_mirrored, "worker": run_worker, "mrcnn_eval": run_mrcnn_eval}[args.mode](options)
    path = args.out_json.replace("{index}", str(result.get("index", 0)))
    with open(path, "w") as f:
        json.dump(result, f, default=float)


if __name__ == "__main__":
    main()
