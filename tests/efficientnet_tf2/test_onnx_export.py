"""ONNX export (tf2onnx) of FP32 and QAT classifiers: Q/DQ placement and onnxruntime parity."""
import numpy as np
import onnx
import pytest
import tensorflow as tf
import tf_keras as keras

from efficientnet_tf2 import onnx_export, qat
from efficientnet_tf2.experiments import classifier_config
from backbones.configs import B0_BLOCKS
from efficientnet_tf2.model import build_classifier
from efficientnet_tf2.preprocessing import normalize

# Every layer type of B0 (see test_qat.py) at stride 32, small enough to convert quickly.
TINY_BLOCKS = B0_BLOCKS[:2] + ("ir_r1_k3_s2_e2_c24_se0.25", "ir_r1_k5_s2_e2_c32_se0.25",
                               "ir_r1_k3_s2_e2_c32_se0.25")
SIZE = 32


def _model(padding, images):
    """Tiny B0-like model overfitted to ``images`` (one class each): confident, well-separated predictions."""
    tf.random.set_seed(1)
    config = classifier_config("efficientnet-b0", blocks=TINY_BLOCKS, head_filters=64, num_classes=6,
                                 padding=padding, bn_momentum=0.5, dropout_rate=0.0, drop_connect_rate=0.0)
    model = build_classifier(config, input_shape=(SIZE, SIZE, 3))
    x, labels = normalize(tf.cast(images, tf.float32)), tf.range(len(images))
    optimizer = keras.optimizers.Adam(0.01)
    for _ in range(40):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, model(x, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return model


@pytest.fixture(scope="module")
def images():
    """Six random uint8 crops; each is its own class for the overfitted model."""
    return np.random.default_rng(0).integers(0, 256, size=(6, SIZE, SIZE, 3), dtype=np.uint8)


def test_fp32_onnx_matches_keras(tmp_path, images):
    model = _model("same", images)
    path = onnx_export.export_onnx(model, str(tmp_path / "fp32.onnx"), SIZE, class_names=list("abcdef"), opset=13)
    result = onnx_export.compare_with_keras(model, path, images)
    assert result["max_abs_diff"] <= 1e-4 and result["top1_agreement"] == 1.0, result
    probs = onnx_export.run_onnx(path, images)["probabilities"]
    assert probs.max() > 0.5  # the check is not on uniform probabilities
    proto = onnx.load(path)
    assert proto.opset_import[0].version >= 13
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["probabilities", "classes", "logits"]
    logits = onnx_export.run_onnx(path, images)["logits"]
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), probs, atol=1e-6)
    assert {p.key: p.value for p in proto.metadata_props}["image_size"] == str(SIZE)
    assert "QuantizeLinear" not in onnx_export.count_ops(proto)


def test_qat_onnx_has_qdq_on_every_conv_and_gemm_and_matches_keras(tmp_path, images):
    """Symmetric padding adds Pad ops between the activation DQ and stride-2 convs."""
    quantized = qat.quantize_model(_model("symmetric", images))
    batches = [normalize(tf.cast(images[i:i + 3], tf.float32)) for i in (0, 3)]
    qat.calibrate(quantized, batches)
    path = onnx_export.export_onnx(quantized, str(tmp_path / "qat.onnx"), SIZE, opset=13)

    coverage = onnx_export.qdq_coverage(path)
    weight_layers = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    num_weight_layers = sum(isinstance(layer, qat.QuantizeWrapperV2) and isinstance(layer.layer, weight_layers)
                            for layer in quantized.layers)
    assert len(coverage) >= num_weight_layers > 20
    missing = [c for c in coverage if not (c["weight_dq"] and c["input_dq"])]
    assert not missing, missing
    proto = onnx.load(path)
    for node in proto.graph.node:  # int8, zero point 0 (TensorRT's symmetric quantization)
        if node.op_type == "QuantizeLinear" and len(node.input) > 2:
            zero = onnx.numpy_helper.to_array(_initializer_or_constant(proto, node.input[2]))
            assert zero.dtype == np.int8 and not zero.any()

    result = onnx_export.compare_with_keras(quantized, path, images)
    assert result["top1_agreement"] == 1.0, result
    assert result["max_abs_diff"] < 0.05, result


def _initializer_or_constant(proto, name):
    for init in proto.graph.initializer:
        if init.name == name:
            return init
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return node.attribute[0].t
    raise KeyError(name)


def test_opset_below_13_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="opset"):
        onnx_export.export_onnx(None, str(tmp_path / "x.onnx"), SIZE, opset=12)
