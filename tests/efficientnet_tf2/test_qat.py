"""Quantization-aware training: quantizer placement, quantizers, full B0/B4 build + train step, checkpoints."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from efficientnet_tf2 import qat
from backbones.configs import B0_BLOCKS
from efficientnet_tf2.model import build_classifier
from common.command import registry
from efficientnet_tf2.experiments import classifier_config

# B0's first two stages (a depthwise-separable block, two inverted-residual blocks with SE,
# a residual Add with drop-connect), three narrow stride-2 blocks to reach stride 32, a small
# head: every layer type of the real models, built fast.
TINY_BLOCKS = B0_BLOCKS[:2] + ("ir_r1_k3_s2_e2_c24_se0.25", "ir_r1_k5_s2_e2_c32_se0.25",
                               "ir_r1_k3_s2_e2_c32_se0.25")
TINY = dict(blocks=TINY_BLOCKS, head_filters=64, num_classes=5)
WEIGHT_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def tiny_model(**overrides):
    tf.random.set_seed(0)
    return build_classifier(classifier_config("efficientnet-quant-b0", **{**TINY, **overrides}),
                              input_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def tiny_pair():
    """(float model, its QAT copy)."""
    model = tiny_model()
    return model, qat.quantize_model(model)


def test_quant_variants_are_registered_with_qat_recipes():
    assert classifier_config("efficientnet-quant-b0").quantized and not classifier_config("efficientnet-b0").quantized
    assert classifier_config("efficientnet-quant-b4").backbone == classifier_config("efficientnet-b4").backbone
    b0, b4 = registry.get_experiment("efficientnet-quant-b0"), registry.get_experiment("efficientnet-quant-b4")
    t, r = b0.task, b0.trainer
    assert (t.optimizer, t.momentum, t.lr, t.lr_batch, t.lr_schedule, r.weight_decay, r.epochs, t.mixup) == \
        ("sgd", 0.89, 0.0125, 128, "cosine", 4.5e-5, 10, 0.0)
    t, r = b4.task, b4.trainer
    assert (t.optimizer, t.rmsprop_alpha, t.rmsprop_eps, t.momentum, t.lr, t.lr_batch, t.lr_schedule,
            r.weight_decay, r.epochs) == ("rmsprop", 0.853, 0.00422, 0.9, 4.09e-6, 32, "linear", 9.714e-4, 2)
    assert b4.task.model == classifier_config("efficientnet-b4", quantized=True)


def test_plan_quantizes_every_conv_dense_input_and_the_se_and_residual_inputs():
    plan = qat.quantize_plan(tiny_model())
    out = {name for name, config in plan.items() if config.quantize_output}
    weights = {name: (config.weight_attr, config.axis) for name, config in plan.items() if config.weight_attr}
    assert weights["block2a_dw_conv"] == ("depthwise_kernel", 2)
    assert weights["block2a_expand_conv"] == ("kernel", 3) and weights["predictions"] == ("kernel", 1)
    # Inputs of expand conv (previous project BN), depthwise conv (swish), SE dense layers, SE multiply
    # (swish + sigmoid gate), project conv (multiply), residual add (BN through drop-connect), head.
    assert {"block1a_project_bn", "block2a_expand_activation", "block2a_se_squeeze", "block2a_se_reduce",
            "block2a_dw_activation", "block2a_se_expand", "block2a_se_excite", "block2b_project_bn",
            "block2b_add", "avg_pool"} <= out
    # Nothing feeds a conv from here: BN before swish, the head activation (pooled first), the logits.
    assert not {"block2a_expand_bn", "top_activation", "logits", "stem_bn"} & out


def test_every_conv_and_dense_is_wrapped_and_weights_are_copied(tiny_pair):
    model, quantized = tiny_pair
    wrapped = {layer.layer.name: layer for layer in quantized.layers if isinstance(layer, qat.QuantizeWrapperV2)}
    convs = [layer for layer in model.layers if isinstance(layer, WEIGHT_LAYERS)]
    assert convs and all(layer.name in wrapped for layer in convs)
    for layer in convs:
        np.testing.assert_array_equal(wrapped[layer.name].trainable_weights[0], layer.trainable_weights[0])
    assert isinstance(quantized.layers[1], qat.QuantizeLayer)  # the input is quantized


def test_calibrated_qat_model_tracks_the_float_model(tiny_pair):
    model, quantized = tiny_pair
    images = [tf.random.stateless_normal([4, 32, 32, 3], seed=[i, 1]) for i in range(2)]
    assert min(qat.activation_ranges(quantized).values()) == 0.0
    assert qat.calibrate(quantized, images) == 2
    ranges = qat.activation_ranges(quantized)
    assert len(ranges) > 10 and min(ranges.values()) > 0.0
    features = keras.Model(model.input, model.get_layer("top_activation").output)
    q_features = keras.Model(quantized.input, quantized.get_layer("quant_top_conv").output)
    f, q = features(images[0], training=False), q_features(images[0], training=False)
    assert tf.reduce_all(tf.math.is_finite(q))
    # top_conv's pre-BN output vs float: int8 noise, far from garbage.
    f_pre = keras.Model(model.input, model.get_layer("top_conv").output)(images[0], training=False)
    rel = float(tf.norm(q - f_pre) / tf.norm(f_pre))
    assert rel < 0.2, rel
    assert f.shape[-1] == 64


def test_calibration_takes_the_max_over_batches_and_leaves_bn_and_dropout_alone(tiny_pair):
    _, quantized = tiny_pair
    batches = [tf.random.stateless_normal([2, 32, 32, 3], seed=[i, 7]) * (i + 1.0) for i in range(3)]
    inner = [getattr(layer, "layer", layer) for layer in quantized.layers]  # inside the quantize wrappers
    batchnorms = [layer for layer in inner if isinstance(layer, keras.layers.BatchNormalization)]
    stats = [v.numpy() for layer in batchnorms for v in (layer.moving_mean, layer.moving_variance)]
    rates = [layer.rate for layer in inner if isinstance(layer, keras.layers.Dropout)]
    assert batchnorms and rates
    input_amax = [v for v in quantized.layers[1].non_trainable_weights if v.name.endswith("_amax:0")]
    assert len(input_amax) == 1

    assert qat.calibrate(quantized, iter(batches), steps=2, method="max") == 2  # an iterator, cut at 2
    assert float(input_amax[0]) == pytest.approx(float(tf.reduce_max(tf.abs(batches[1]))))
    maxima = qat.activation_ranges(quantized)
    assert qat.calibrate(quantized, ((b, 0) for b in batches[:2]), method="mean") == 2  # (images, labels)
    means = qat.activation_ranges(quantized)
    assert float(input_amax[0]) == pytest.approx(float(tf.reduce_mean([tf.reduce_max(tf.abs(b))
                                                                           for b in batches[:2]])))
    assert all(0.0 < means[k] <= maxima[k] + 1e-6 for k in maxima)
    assert qat.calibrate(quantized, batches[:1], method="percentile", percentile=90.0) == 1
    magnitudes = np.sort(np.abs(batches[0].numpy()).ravel())
    assert float(input_amax[0]) == pytest.approx(magnitudes[-int(np.ceil(0.1 * magnitudes.size))])
    assert all(0.0 < r <= maxima[k] + 1e-6 for k, r in qat.activation_ranges(quantized).items())
    assert all(q.percentile is None for q in qat._activation_quantizers(quantized))
    after = [v.numpy() for layer in batchnorms for v in (layer.moving_mean, layer.moving_variance)]
    assert all(np.array_equal(a, b) for a, b in zip(stats, after))
    assert [layer.rate for layer in inner if isinstance(layer, keras.layers.Dropout)] == rates
    assert all(layer.trainable for layer in batchnorms)
    with pytest.raises(ValueError, match="method"):
        qat.calibrate(quantized, batches, method="entropy")
    with pytest.raises(ValueError, match="percentile"):
        qat.calibrate(quantized, batches, method="percentile", percentile=0.0)


def test_weight_quantizer_is_symmetric_per_channel_int8():
    w = tf.random.stateless_normal([3, 3, 4, 6], seed=[0, 0]) * tf.range(1.0, 7.0)
    q = qat.WeightQuantizer(axis=3)(w, False, {})
    amax = tf.reduce_max(tf.abs(w), axis=[0, 1, 2])
    steps = q / (amax / 127.0)
    np.testing.assert_allclose(steps, tf.round(steps), atol=1e-3)
    np.testing.assert_allclose(tf.reduce_max(tf.abs(q), axis=[0, 1, 2]), amax, rtol=1e-6)
    assert float(tf.reduce_max(tf.abs(q - w) / amax)) <= 0.5 / 127 + 1e-6


def test_activation_range_is_full_int8_as_onnx_quantize_linear():
    """Step amax/127, levels -128..127 (what the exported QuantizeLinear computes), zero point 0."""
    layer = keras.layers.Layer()
    quantizer = qat.ActivationQuantizer(ema_decay=qat.FIXED_RANGES)
    weights = quantizer.build(tf.TensorShape([5]), "x", layer)
    weights["amax"].assign(127.0)  # step 1
    out = quantizer(tf.constant([-500.0, -127.6, -3.4, 2.5, 300.0]), False, weights)
    np.testing.assert_array_equal(out, [-128.0, -128.0, -3.0, 2.0, 127.0])  # ties to even, as ONNX


def test_activation_quantizer_moving_range():
    layer = keras.layers.Layer()
    quantizer = qat.ActivationQuantizer(ema_decay=0.5)
    weights = quantizer.build(tf.TensorShape([2]), "x", layer)
    quantizer(tf.constant([1.0, -4.0]), True, weights)
    assert float(weights["amax"]) == 4.0  # first batch sets the range
    quantizer(tf.constant([2.0, 0.0]), True, weights)
    assert float(weights["amax"]) == 3.0  # then 0.5 * 4 + 0.5 * 2
    out = quantizer(tf.constant([10.0, 0.01]), False, weights)  # inference: fixed range, clipped
    np.testing.assert_allclose(out, [3.0, 0.0], atol=1e-6)
    fixed = qat.ActivationQuantizer(ema_decay=qat.FIXED_RANGES)
    quantizer, weights = fixed, fixed.build(tf.TensorShape([2]), "y", layer)
    quantizer(tf.constant([1.0, -4.0]), True, weights)
    quantizer(tf.constant([9.0, 0.0]), True, weights)
    assert float(weights["amax"]) == 4.0  # fixed once set (by calibration or the first batch)
    with pytest.raises(ValueError, match="ema_decay"):
        qat.ActivationQuantizer(ema_decay=1.5)


def test_configs_round_trip():
    config = qat.LayerQuantizeConfig("kernel", 3, True, 0.9)
    assert qat.LayerQuantizeConfig.from_config(config.get_config()).get_config() == config.get_config()
    for quantizer in (qat.WeightQuantizer(2), qat.ActivationQuantizer(0.7)):
        assert type(quantizer).from_config(quantizer.get_config()) == quantizer


def test_checkpoint_round_trip_and_savedmodel(tiny_pair, tmp_path):
    _, quantized = tiny_pair
    qat.calibrate(quantized, [tf.random.stateless_normal([2, 32, 32, 3], seed=[5, 5])])
    prefix = tf.train.Checkpoint(model=quantized).write(str(tmp_path / "ckpt"))
    fresh = qat.quantize_model(tiny_model())
    tf.train.Checkpoint(model=fresh).read(prefix).assert_existing_objects_matched()
    x = tf.random.stateless_normal([2, 32, 32, 3], seed=[6, 6])
    np.testing.assert_allclose(fresh(x, training=False), quantized(x, training=False), atol=1e-6)
    assert list(qat.activation_ranges(fresh).values()) == list(qat.activation_ranges(quantized).values())


def test_float_policy_required(monkeypatch):
    monkeypatch.setattr(keras.mixed_precision, "global_policy", lambda: keras.mixed_precision.Policy("mixed_float16"))
    with pytest.raises(ValueError, match="float32"):
        qat.quantize_model(tiny_model())


@pytest.fixture(scope="module", params=["efficientnet-quant-b0", "efficientnet-quant-b4"])
def full_pair(request):
    """(float model, QAT copy) of a full variant at 32 px with 4 classes (built once per variant).

    Without stochastic depth and dropout, so that every block gets a gradient from a batch of 2.
    """
    tf.random.set_seed(0)
    config = classifier_config(request.param, num_classes=4, drop_connect_rate=0.0, dropout_rate=0.0)
    model = build_classifier(config, input_shape=(32, 32, 3))
    return model, qat.quantize_model(model)


def test_full_qat_model_builds_and_trains_a_step(full_pair):
    """Every conv/dense is wrapped, gets a finite non-zero kernel gradient, and its kernel moves."""
    model, quantized = full_pair
    wrappers = {layer.layer.name: layer for layer in quantized.layers if isinstance(layer, qat.QuantizeWrapperV2)}
    convs = [layer.name for layer in model.layers if isinstance(layer, WEIGHT_LAYERS)]
    assert len(convs) > 60 and set(convs) <= set(wrappers)
    kernels = [wrappers[name].trainable_weights[0] for name in convs]
    assert all("kernel" in kernel.name for kernel in kernels)
    images, labels = tf.random.stateless_normal([2, 32, 32, 3], seed=[1, 2]), tf.constant([0, 3])
    with tf.GradientTape() as tape:
        logits = quantized(images, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    variables = quantized.trainable_variables
    grads = dict(zip((v.ref() for v in variables), tape.gradient(loss, variables)))
    assert all(g is not None and bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads.values())
    # The straight-through estimator lets the gradient through every weight and activation quantizer.
    no_grad = [k.name for k in kernels if not bool(tf.reduce_any(grads[k.ref()] != 0.0))]
    assert not no_grad, no_grad
    before = [k.numpy() for k in kernels]
    keras.optimizers.SGD(0.01, momentum=0.9).apply_gradients((grads[v.ref()], v) for v in variables)
    unchanged = [k.name for k, b in zip(kernels, before) if np.array_equal(b, k.numpy())]
    assert not unchanged, unchanged
    assert min(qat.activation_ranges(quantized).values()) > 0.0  # the training pass set every range
