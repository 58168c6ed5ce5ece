"""The contract between a model family and the shared :class:`~common.training.trainer.Trainer`.

A task owns everything model-specific (model, inputs, losses, metrics); the
trainer owns the loop, precision, distribution, logging and checkpoints.
Shapes and dtypes of ``batch`` are the task's business; the trainer only
needs :meth:`Task.batch_size` to count images.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, List, Optional

import tensorflow as tf


class Task(abc.ABC):
    """Interface every trainable model family implements (Model Garden style)."""

    #: name used in logs and checkpoints.
    name: str = "task"

    @abc.abstractmethod
    def build_model(self):
        """Returns a built (variables created) Keras model."""

    @abc.abstractmethod
    def build_train_dataset(self, global_batch: int, epoch: int, input_context=None) -> tf.data.Dataset:
        """Training batches of one epoch (no ``repeat``); the order depends only on (seed, epoch).

        With a ``tf.distribute.InputContext`` (several replicas or workers) the
        batches hold ``input_context.get_per_replica_batch_size(global_batch)``
        examples and the dataset keeps shard ``input_pipeline_id`` of
        ``num_input_pipelines`` (the trainer always passes the global batch).
        """

    @abc.abstractmethod
    def build_eval_dataset(self, global_batch: int, input_context=None) -> tf.data.Dataset:
        """Validation batches, deterministic order, every sample once (batching as above)."""

    @abc.abstractmethod
    def train_loss(self, model, batch, training: bool = True):
        """Per-replica loss of one batch.

        Returns:
          ``(loss, logs)``: ``loss`` is a float32 scalar, the mean over the
          replica's examples (the trainer adds weight decay and handles the
          replica count); ``logs`` maps names to float32 scalars to report.
        """

    @abc.abstractmethod
    def validation_step(self, model, batch) -> Dict[str, tf.Tensor]:
        """Per-batch *sums* (e.g. loss sum, correct count, example count)."""

    @abc.abstractmethod
    def reduce_validation(self, sums: Dict[str, float]) -> Dict[str, float]:
        """Turns the summed validation outputs into final metrics.

        With ``validation_reduction = "concat"`` ``sums`` is empty and the task
        reduces what :meth:`update_validation` accumulated.
        """

    #: ``"sum"``: :meth:`validation_step` returns per-batch sums that the trainer
    #: adds up (classification). ``"concat"``: it returns per-example outputs that
    #: go to :meth:`update_validation` as numpy arrays (detection, COCO metrics).
    validation_reduction: str = "sum"

    def write_validation_report(self, folder: str) -> List[str]:
        """Writes the last validation's detailed results (per-class tables, ...) into ``folder``; returns the paths
        (default: none). Called on the chief after every validation of a run with a workspace."""
        del folder
        return []

    def per_class_metrics(self) -> Dict[str, float]:
        """``{"val.<metric>/<class>": value}`` of the last validation, for the run's log (default: none)."""
        return {}

    def validation_curves(self) -> Dict[str, Any]:
        """``{tag: (precision [R], recall [R])}`` precision-recall curves of the last validation, for
        TensorBoard's PR-curve plugin (default: none)."""
        return {}

    def begin_validation(self) -> None:
        """Resets host-side validation state (called before every validation)."""

    def observe_examples(self, outputs: Dict[str, Any]) -> None:
        """One batch of a ``"sum"`` task's per-example ``example.*`` outputs as numpy arrays (in the
        validation order of this worker's batches); default: ignored."""

    def update_validation(self, outputs: Dict[str, Any]) -> int:
        """Accumulates one batch of numpy outputs (``"concat"`` tasks); returns its image count."""
        raise NotImplementedError(f"{type(self).__name__} sets validation_reduction='concat' "
                                  "but does not implement update_validation")

    def batch_size(self, batch) -> int:
        """Number of images in ``batch`` (first dimension of its first tensor)."""
        first = tf.nest.flatten(batch)[0]
        return int(first.shape[0]) if first.shape[0] is not None else int(tf.shape(first)[0])

    def checkpoint_items(self) -> Dict[str, Any]:
        """Extra trackables (e.g. RNG generators) saved with the training state."""
        return {}

    def steps_per_epoch(self, global_batch: int) -> Optional[int]:
        """Number of training steps in an epoch, or ``None`` if unknown."""
        return None

    def epoch_metrics(self) -> Dict[str, float]:
        """Extra ``train.*`` metrics of the epoch that just ended (e.g. images skipped by the pipeline)."""
        return {}


def local_batch_size(global_batch: int, input_context=None) -> int:
    """Batch of one replica: ``global_batch`` split by the input context (all of it without one)."""
    return input_context.get_per_replica_batch_size(global_batch) if input_context is not None else global_batch
