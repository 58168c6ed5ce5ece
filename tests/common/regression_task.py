"""A tiny regression task shared by the trainer and step tests."""
import numpy as np
import tensorflow as tf
import tf_keras as keras

from common.training.task import Task

X = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)


class Regression(Task):
    """Mean squared error of a Dense(1) on fixed data; batches in file order."""

    validation_reduction = "sum"

    def build_model(self):
        return keras.Sequential([keras.layers.Dense(1, input_shape=(3,),
                                                    kernel_initializer=keras.initializers.Constant(0.1))])

    def build_train_dataset(self, global_batch, epoch, input_context=None):
        return tf.data.Dataset.from_tensor_slices((X, Y)).batch(global_batch, drop_remainder=True)

    def build_eval_dataset(self, global_batch, input_context=None):
        return tf.data.Dataset.from_tensor_slices((X, Y)).batch(global_batch)

    def train_loss(self, model, batch, training=True):
        x, y = batch
        return tf.reduce_mean(tf.square(model(x) - y)), {}

    def validation_step(self, model, batch):
        x, y = batch
        return {"sse": tf.reduce_sum(tf.square(model(x) - y)), "count": tf.cast(tf.shape(x)[0], tf.float32)}

    def reduce_validation(self, sums):
        return {"mse": sums["sse"] / sums["count"]}
