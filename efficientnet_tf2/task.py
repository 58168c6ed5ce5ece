"""Image-classification task: a classifier on any backbone, ImageFolder inputs, losses, metrics.

Batches are ``(images [B, S, S, 3] float32 normalised, labels [B] int32)``.
Training applies MixUp (one Beta(alpha, alpha) lambda per batch) and label
smoothing; the loss is computed in float32 from float32 logits.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from common.training.task import Task, local_batch_size
from efficientnet_tf2 import data as data_lib
from efficientnet_tf2.experiments import ClassifierConfig
from efficientnet_tf2.mixup import mixup, smooth_labels
from efficientnet_tf2.model import build_classifier

_LOG = logging.getLogger(__name__)
# --data-backend -> DALI device (efficientnet_tf2.dali, imported only when used).
DALI_BACKENDS = {"dali-cpu": "cpu", "dali-gpu": "gpu"}


class DataBackendError(RuntimeError):
    """The chosen ``--data-backend`` cannot run here (package or device missing)."""


@dataclasses.dataclass
class ClassificationConfig:
    """Data and loss settings of a classification run.

    Attributes:
      model: registered model name (``efficientnet-b0`` ...; the Keras model's name).
      data_dir: ImageFolder root with ``train/`` and ``val/`` (unused for synthetic).
      data_backend: ``tfdata`` | ``synthetic`` | ``dali-cpu`` | ``dali-gpu``.
      num_classes: classifier width; checked against the class folders.
      image_size: training/eval resolution (default: the backbone's).
      augment: ``autoaugment`` | ``none``.
      mixup: MixUp alpha (0 disables).
      label_smoothing: smoothing of one-hot targets.
      seed: base seed of shuffling/augmentation (epoch ``e`` uses ``seed + e``).
      model_config: the classifier (backbone + head); its ``num_classes`` is replaced by ``num_classes``.
      check_splits: splits whose files are checked before the run (unusable ones are left out).
      strict_data: any unusable file is an error (``--strict-data``).
      report_dir: where the full lists of unusable files go (None: not written).
    """

    model: str = "efficientnet-b0"
    data_dir: Optional[str] = None
    data_backend: str = "tfdata"
    num_classes: int = 1000
    image_size: Optional[int] = None
    augment: str = "autoaugment"
    mixup: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    model_config: ClassifierConfig = ClassifierConfig()
    check_splits: Tuple[str, ...] = ("train", "val")
    strict_data: bool = False
    report_dir: Optional[str] = None


class ImageClassificationTask(Task):
    """A classifier on ImageFolder (or synthetic) data."""

    name = "image_classification"

    def __init__(self, config: ClassificationConfig):
        self.config = config
        self.model_config = config.model_config.replace(num_classes=config.num_classes)
        self.image_size = config.image_size or self.model_config.resolution
        self.class_names = None
        self._num_train = None
        self.excluded = set()  # unusable files found by the check, left out of every split
        self.train_skips = data_lib.SkipCounter()  # files that passed the check but failed to decode
        if config.data_backend != "synthetic":
            self._check_folders()
        if config.data_backend in DALI_BACKENDS:
            self._check_dali()
        self.mixup_rng = tf.random.Generator.from_seed(config.seed + 1)
        self.confusion, self._examples, self._sharded = None, [], False

    def _check_folders(self):
        """Class names from ``train/`` (checked against ``num_classes``); every file of the used splits checked."""
        if not self.config.data_dir:
            raise ValueError(f"--data-backend {self.config.data_backend} needs a data directory "
                             "(positional DATA_DIR / --data-dir)")
        train = data_lib.ImageFolder.from_dir(self.config.data_dir, "train")  # listed once: 300k files take 1 s
        self.class_names = list(train.class_names)
        data_lib.check_num_classes(self.class_names, self.config.num_classes,
                                   source=f"{self.config.data_dir}/train")
        self._num_train = len(train)
        for split in self.config.check_splits:
            folder = train if split == "train" else data_lib.ImageFolder.from_dir(self.config.data_dir, split,
                                                                                   self.class_names)
            usable = self._check_split(folder, split)
            if split == "train":
                self._num_train = usable

    def _check_split(self, folder, split) -> int:
        """Checks each file of ``folder``; unusable ones join ``self.excluded``. Returns the usable count."""
        from common.io import data_check

        report = data_check.DataReport(folder.split_dir)
        good = data_check.check_images(list(folder.paths), report, cache_dir=self.config.report_dir)
        list_file = os.path.join(self.config.report_dir, f"unusable_{split}.tsv") if self.config.report_dir else None
        data_check.settle(report, self.config.strict_data, list_file, what="images")
        if not good:
            raise data_check.DataError(f"no usable images in {folder.split_dir} ({len(folder)} listed)")
        self.excluded |= {where for where, _ in report.problems}
        return len(good)

    def _check_dali(self):
        """Raises `DataBackendError` at once if DALI or its device is missing."""
        backend = self.config.data_backend
        try:
            from efficientnet_tf2 import dali
        except ImportError as error:
            raise DataBackendError(
                f"--data-backend {backend} needs NVIDIA DALI and its TensorFlow plugin ({error}); "
                "install them with `make install` (nvidia-dali-cuda120 and, with "
                "--no-build-isolation, nvidia-dali-tf-plugin-cuda120).") from error
        try:
            dali.check_device(DALI_BACKENDS[backend])
        except dali.DaliDeviceError as error:
            raise DataBackendError(str(error)) from error

    def build_model(self):
        """The classifier at the task's image size, with float32 logits."""
        return build_classifier(self.model_config, input_shape=(self.image_size, self.image_size, 3),
                                  name=self.config.model.replace("-", "_"))

    def _dataset(self, split, batch, training, seed, input_context):
        """``batch`` is global; with an input context, per replica and sharded."""
        batch = local_batch_size(batch, input_context)
        if self.config.data_backend == "synthetic":
            return data_lib.synthetic_dataset(self.image_size, batch, self.config.num_classes)
        shard = None
        self._sharded = input_context is not None and input_context.num_input_pipelines > 1
        if self._sharded:
            shard = (input_context.num_input_pipelines, input_context.input_pipeline_id)
        augment = self.config.augment if training else "none"
        if self.config.data_backend in DALI_BACKENDS:
            from efficientnet_tf2 import dali

            if self.config.data_backend == "dali-gpu" and input_context is not None:
                raise DataBackendError("--data-backend dali-gpu feeds a single replica; "
                                       "use dali-cpu or tfdata with several devices or workers")
            return dali.build_dali_dataset(self.config.data_dir, split, self.image_size, batch,
                                           training=training, augment=augment,
                                           device=DALI_BACKENDS[self.config.data_backend],
                                           num_classes=self.config.num_classes, seed=seed, shard=shard,
                                           exclude=self.excluded)
        return data_lib.build_dataset(self.config.data_dir, split, self.image_size, batch,
                                      training=training, augment=augment,
                                      num_classes=self.config.num_classes, seed=seed, shard=shard,
                                      exclude=self.excluded, skip_counter=self.train_skips if training else None)

    def build_train_dataset(self, global_batch, epoch, input_context=None):
        return self._dataset("train", global_batch, True, self.config.seed + epoch, input_context)

    def build_eval_dataset(self, global_batch, input_context=None):
        return self._dataset("val", global_batch, False, self.config.seed, input_context)

    def steps_per_epoch(self, global_batch):
        if self._num_train is None:
            return None
        return max(self._num_train // global_batch, 1)

    def begin_validation(self):
        self._examples = []

    def observe_examples(self, outputs):
        """Keeps each validation image's true-class and predicted probabilities (for ``worst/``)."""
        self._examples.append(outputs)

    def write_validation_report(self, folder: str):
        """``per_class.csv``, ``confusion.csv``, ``confusion.png`` and ``worst/`` of the last validation in
        ``folder``; the top confusions, printed. Returns the paths written."""
        from efficientnet_tf2.evaluation import top_confusions, write_reports

        if self.confusion is None:
            return []
        names = list(self.class_names or [])
        names = names if len(names) == len(self.confusion) else [str(i) for i in range(len(self.confusion))]
        paths = write_reports(folder, self.confusion, names)
        lines = top_confusions(self.confusion, names)
        print("top confusions (true -> predicted): " + ("; ".join(lines) if lines else "none") +
              f"\nper-class metrics: {paths[0]}", flush=True)
        return paths + self._write_worst(folder, names)

    def per_class_metrics(self):
        """``val.recall/<class>`` (the class's accuracy) and ``val.precision/<class>`` in percent (NaN: undefined)."""
        from efficientnet_tf2.evaluation import per_class_rows

        if self.confusion is None:
            return {}
        names = list(self.class_names or [])
        names = names if len(names) == len(self.confusion) else [str(i) for i in range(len(self.confusion))]
        rows = per_class_rows(self.confusion, names)
        return {**{f"val.recall/{r[0]}": r[3] for r in rows}, **{f"val.precision/{r[0]}": r[4] for r in rows}}

    def _write_worst(self, folder: str, names):
        """``worst/`` when each validated image is known by file (one input pipeline, ImageFolder data, no
        file dropped while decoding); otherwise one line saying why not."""
        from efficientnet_tf2.evaluation import write_worst

        if not self._examples or self.config.data_backend == "synthetic":
            return []
        examples = {k: np.concatenate([batch[k] for batch in self._examples]) for k in self._examples[0]}
        seen = len(examples["example.true_prob"])
        folder_list = data_lib.ImageFolder.from_dir(self.config.data_dir, "val", self.class_names, self.excluded)
        if self._sharded or self.config.data_backend != "tfdata" or seen != len(folder_list):
            _LOG.info("worst/ not drawn: %d validated images cannot be matched to the %d files of %s "
                      "(sharded input, DALI, a capped or partly undecodable split)",
                      seen, len(folder_list), folder_list.split_dir)
            return []
        return write_worst(folder, folder_list.paths, folder_list.labels, examples, names)

    def checkpoint_items(self):
        return {"mixup_rng": self.mixup_rng}

    def epoch_metrics(self):
        """``train.skipped_images``: files that passed the pre-run check but failed to decode (warned)."""
        if self.config.data_backend != "tfdata":
            return {}
        skipped = self.train_skips.count
        self.train_skips.reset()
        if skipped:
            _LOG.warning("%d training image(s) passed the file check but failed to decode and were skipped "
                         "this epoch (TensorFlow's warning names the error; -v shows it)", skipped)
        return {"train.skipped_images": float(skipped)}

    def train_loss(self, model, batch, training=True):
        """Cross-entropy with MixUp and label smoothing on ``(images, labels)``."""
        images, labels = batch
        onehot = tf.one_hot(labels, self.config.num_classes, dtype=tf.float32)
        if self.config.mixup > 0:
            images, onehot = mixup(images, onehot, self.config.mixup, seed=self.mixup_rng.make_seeds(1)[:, 0])
        if self.config.label_smoothing > 0:
            onehot = smooth_labels(onehot, self.config.label_smoothing)
        logits = tf.cast(model(images, training=training), tf.float32)
        loss = tf.nn.softmax_cross_entropy_with_logits(onehot, logits)
        return tf.reduce_mean(loss), {}

    def validation_step(self, model, batch):
        """Sums of loss, top-1 and top-5 hits, the confusion matrix and the example count of a batch; per image
        (``example.*``, ``[B]``): the true class's probability, the predicted class and its probability."""
        images, labels = batch
        logits = tf.cast(model(images, training=False), tf.float32)
        labels = tf.cast(labels, tf.int32)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        k = min(5, self.config.num_classes)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        probabilities = tf.nn.softmax(logits)
        return {"loss": tf.reduce_sum(loss),
                "example.true_prob": tf.gather(probabilities, labels, batch_dims=1),
                "example.predicted": predicted,
                "example.predicted_prob": tf.reduce_max(probabilities, axis=-1),
                "confusion": tf.math.confusion_matrix(labels, predicted, self.config.num_classes, dtype=tf.float32),
                "top1": tf.reduce_sum(tf.cast(tf.nn.in_top_k(labels, logits, 1), tf.float32)),
                "top5": tf.reduce_sum(tf.cast(tf.nn.in_top_k(labels, logits, k), tf.float32)),
                "count": tf.cast(tf.shape(labels)[0], tf.float32)}

    def reduce_validation(self, sums):
        """Mean loss and top-1/top-5 accuracy in percent (as NVIDIA's logs); keeps the confusion matrix for
        :meth:`write_validation_report`."""
        self.confusion = sums.get("confusion")
        count = max(sums["count"], 1.0)
        return {"loss": sums["loss"] / count, "top1": 100.0 * sums["top1"] / count,
                "top5": 100.0 * sums["top5"] / count}
