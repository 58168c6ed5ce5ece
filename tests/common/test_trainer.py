"""Shared trainer on a tiny regression task: accumulation, clipping, warm-up stats, concat validation."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.io.logger import NullLogger
from common.training.trainer import Trainer, TrainerConfig
from regression_task import X, Y, Regression


def _fit(batch, **config):
    task = Regression()
    model = task.build_model()
    trainer = Trainer(task, model, keras.optimizers.SGD(0.1), TrainerConfig(epochs=1, evaluate=False, **config),
                      NullLogger())
    trainer.fit(batch)
    return model.get_weights(), trainer


def test_gradient_accumulation_equals_the_large_batch():
    big, _ = _fit(8)
    accumulated, _ = _fit(4, grad_accum_steps=2)
    for a, b in zip(big, accumulated):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    small, _ = _fit(4)
    assert not np.allclose(small[0], big[0])


def test_clipping_bounds_the_update():
    clipped, _ = _fit(8, clip_grad_norm=1e-3)
    start = Regression().build_model().get_weights()
    step = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(clipped, start)))
    assert step == pytest.approx(0.1 * 1e-3, rel=1e-3)


def test_warmup_steps_are_left_out_of_throughput():
    _, trainer = _fit(2, log_warmup_steps=6)  # 4 steps, all warm-up
    assert trainer.train_epoch(0, 2)["train.total_ips"] > 0  # steps 5-8: 7 and 8 are timed
    _, cold = _fit(2, log_warmup_steps=100)
    metrics = cold.train_epoch(0, 2)
    assert metrics["train.total_ips"] == 0.0 and np.isfinite(metrics["train.loss"])


def test_sum_validation_metrics():
    _, trainer = _fit(8)
    metrics = trainer.evaluate(3)
    assert set(metrics) >= {"val.mse", "val.total_ips"}


class _Concat(Regression):
    validation_reduction = "concat"

    def validation_step(self, model, batch):
        x, y = batch
        return {"error": tf.squeeze(model(x) - y, -1)}

    def begin_validation(self):
        self.errors = []

    def update_validation(self, outputs):
        self.errors.append(outputs["error"])
        return len(outputs["error"])

    def reduce_validation(self, sums):
        assert sums == {}
        return {"mse": float(np.mean(np.concatenate(self.errors) ** 2))}


def test_concat_validation_sees_every_example_once():
    task = _Concat()
    model = task.build_model()
    trainer = Trainer(task, model, None, TrainerConfig(), NullLogger())
    metrics = trainer.evaluate(3)
    expected = float(np.mean((model(X).numpy() - Y) ** 2))
    assert metrics["val.mse"] == pytest.approx(expected, rel=1e-5)
    assert sum(len(e) for e in task.errors) == 8


@pytest.mark.parametrize("epochs, every, validated", [(3, 2, [2, 3]), (4, 2, [2, 4]), (2, 4, [2]), (3, None, [3])])
def test_validation_cadence_always_includes_the_last_epoch(epochs, every, validated):
    """``eval_every`` epochs, and the last epoch whatever the cadence (a 10-epoch run of a recipe validating every
    4 ends validated; before, its last 2 epochs went unseen and ``model_best`` was epoch 8's)."""
    trainer = Trainer(Regression(), None, None, TrainerConfig(epochs=epochs, eval_every=every), NullLogger())
    assert [e + 1 for e in range(epochs) if trainer._evaluates_after(e)] == validated
