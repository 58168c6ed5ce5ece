"""efficientnet_tf2.qat_tflite: the QAT model's float twin with its ranges as clips, and the clips moved into the
int8 ranges of the TFLite file. (End to end, export and eval of a fine-tuned QAT model: test_onnx_runtime.py.)"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from efficientnet_tf2 import export_graph, qat, qat_tflite
from efficientnet_tf2.experiments import classifier_config
from efficientnet_tf2.model import build_classifier

SIZE = 32


def _float_b0():
    return build_classifier(classifier_config("efficientnet-b0", num_classes=10), input_shape=(SIZE, SIZE, 3))


@pytest.fixture(scope="module")
def qat_model():
    model = qat.quantize_model(_float_b0(), qat.FIXED_RANGES)
    qat.calibrate(model, [tf.random.stateless_normal([4, SIZE, SIZE, 3], [1, 2])], method="max")
    return model


def test_the_float_twin_has_the_qat_weights_and_one_clip_per_range(qat_model):
    twin = qat_tflite.clipped_float_model(qat_model, _float_b0)
    trained = {v.name: v.numpy() for v in qat_model.weights}
    for variable in twin.weights:
        np.testing.assert_array_equal(variable.numpy(), trained[variable.name])
    ranges = qat_tflite.trained_ranges(qat_model)
    clipped = [layer for layer in twin.layers if isinstance(layer, qat_tflite.Clipped)]
    assert len(ranges) == len(clipped) == 133  # B0: 132 outputs, and the input range on the stem's input
    assert sum(isinstance(layer.layer, export_graph.FlatDense) for layer in clipped) == 32  # the SE layers
    assert all(layer.output_amax == ranges[layer.name] for layer in clipped if layer.output_amax is not None)


def test_a_clip_becomes_the_int8_range_of_its_input():
    """x -> Dense -> clip(+-0.5) -> Dense, and a clip of a clip: no MINIMUM/MAXIMUM left after quantization, the
    clipped tensor's int8 range is at most the clip, and the file computes the clipped model (to int8 steps)."""
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, name="a")(inputs)
    hidden = keras.layers.Lambda(lambda t: tf.clip_by_value(tf.clip_by_value(t, -0.8, 0.8), -0.5, 0.5))(hidden)
    model = keras.Model(inputs, keras.layers.Dense(4, name="b")(hidden))
    samples = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32) * 3

    function = tf.function(model, input_signature=[tf.TensorSpec([None, 8], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None]] for row in samples)
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    assert qat_tflite.op_counts(calibrated)["MINIMUM"] == 2
    flat = qat_tflite.quantize(calibrated)
    assert "MINIMUM" not in qat_tflite.op_counts(flat) and "MAXIMUM" not in qat_tflite.op_counts(flat)

    interpreter = tf.lite.Interpreter(model_content=flat)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], [64, 8])
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], samples)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = model(samples).numpy()
    unclipped = keras.Model(inputs, model.get_layer("b")(model.get_layer("a").output))(samples).numpy()
    error, unclipped_error = np.abs(got - expected).max(), np.abs(got - unclipped).max()
    assert error < 0.1 * np.abs(expected).max() and unclipped_error > 5 * error, (error, unclipped_error)


def test_drop_clips_refuses_a_graph_without_clips():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.ones((1, 4), np.float32)] for _ in range(2))
    converter._experimental_calibrate_only = True
    with pytest.raises(ValueError, match="no clip_by_value"):
        qat_tflite.drop_clips(converter.convert())
