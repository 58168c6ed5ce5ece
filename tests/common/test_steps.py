"""The public step builders: one TrainStep update is the SGD update of the task's loss."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.training import collectives
from common.command.config import TrainerConfig
from common.training.steps import EvalStep, TrainStep, optimizer_learning_rate
from common.training.validation import eval_step_limit
from regression_task import X, Y, Regression

def test_one_update_is_the_sgd_step_of_loss_plus_weight_decay():
    task = Regression()
    model = task.build_model()
    w0, b0 = [v.numpy() for v in model.trainable_variables]
    optimizer = keras.optimizers.SGD(0.1)
    step = TrainStep(task, model, optimizer, TrainerConfig(weight_decay=0.01),
                     collectives.for_strategy(tf.distribute.get_strategy()))
    logs = step.update((tf.constant(X), tf.constant(Y)))
    residual = X @ w0 + b0 - Y
    grad_w = 2 * X.T @ residual / len(X) + 0.01 * w0  # l2_loss = wd * sum(w^2) / 2, kernels only
    grad_b = 2 * residual.mean(0)
    np.testing.assert_allclose(model.trainable_variables[0].numpy(), w0 - 0.1 * grad_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.trainable_variables[1].numpy(), b0 - 0.1 * grad_b, rtol=1e-5, atol=1e-6)
    assert float(logs["loss"]) == pytest.approx(float(np.mean(residual ** 2)), rel=1e-5)
    assert optimizer_learning_rate(optimizer) == pytest.approx(0.1)


def test_eval_step_sums_over_the_batch():
    task = Regression()
    model = task.build_model()
    step = EvalStep(task, model, collectives.for_strategy(tf.distribute.get_strategy()))
    out = step.run((tf.constant(X), tf.constant(Y)))
    assert float(out["count"]) == len(X) and float(out["sse"]) == pytest.approx(float(np.sum((model(X) - Y) ** 2)), rel=1e-5)


def test_map_present_keeps_none_in_place():
    out = collectives.map_present(lambda ts: [t * 2 for t in ts], [tf.constant(1.0), None, tf.constant(3.0)])
    assert out[1] is None and float(out[0]) == 2.0 and float(out[2]) == 6.0


def test_single_process_collectives_are_the_identity():
    c = collectives.for_strategy(tf.distribute.get_strategy())
    assert (c.replicas, c.is_chief, c.num_workers, c.apply_kwargs()) == (1, True, 1, {})
    grads = [tf.constant([1.0, 2.0])]
    assert c.sum_gradients(grads) is grads


@pytest.mark.parametrize("steps, samples, batch, limit", [(None, None, 8, None), (5, None, 8, 5),
                                                          (None, 20, 8, 3), (2, 20, 8, 2)])
def test_eval_step_limit(steps, samples, batch, limit):
    assert eval_step_limit(TrainerConfig(eval_steps=steps, eval_samples=samples), batch) == limit
