"""Quantization-aware training (QAT) of EfficientNet, TensorRT style, with TF-MOT.

TensorRT's explicit-quantization mode wants symmetric int8 Q/DQ pairs (zero
point 0) on the weights (per output channel) and on the activation input of
every convolution and matrix multiply. TF-MOT's default 8-bit scheme targets
TFLite instead: asymmetric uint8 activations, narrow-range ``FakeQuant*``
ops that tf2onnx cannot convert, no support for ``Multiply`` (the SE gate)
and Conv+BN rewrites meant for ReLU networks. This module therefore passes
its own :class:`TensorRTQuantizeScheme` to ``tfmot.quantization.keras.quantize_apply``:

* weights of Conv2D, DepthwiseConv2D and Dense: per-output-channel symmetric
  int8, ``amax = max|w|`` recomputed at every call (:class:`WeightQuantizer`);
* activations: TF-MOT quantizes layer *outputs*, so a layer's output is
  quantized when one of its consumers is a Conv2D, DepthwiseConv2D or Dense
  (every conv/dense input is quantized), the SE ``Multiply`` or a residual
  ``Add`` (both inputs quantized, as in NVIDIA's quantized EfficientNet),
  looking through Dropout (drop-connect) and ZeroPadding2D. The normalised
  model input gets a ``QuantizeLayer``. Per-tensor symmetric int8
  (:class:`ActivationQuantizer`). The swish activations need no rule of their
  own: their outputs are quantized where they feed a depthwise conv or the SE gate.

Activation ranges (``amax``), as NVIDIA's pytorch-quantization workflow: a
model fine-tuned from FP32 weights is first calibrated (:func:`calibrate`:
percentile 99.99 of ``|x|`` on a few training batches, BN in inference mode,
dropout off; the max calibrator clips nothing and loses several points of
top-1 on EfficientNet's long-tailed activations) and its ranges then stay fixed
(``ema_decay = FIXED_RANGES``). A model trained without calibration instead
follows an exponential moving average of the batch ``max|x|`` in training.
Inference always uses the stored ``amax``.

Both quantizers call ``tf.quantization.quantize_and_dequantize_v2`` (the
``QuantizeAndDequantizeV4`` op), which tf2onnx turns into int8
QuantizeLinear/DequantizeLinear pairs (per-axis for weights, opset >= 13).
BatchNorm stays unfolded, as with NVIDIA's pytorch-quantization; TensorRT
folds it when it builds the engine.

The float model is built and given its FP32 weights first; :func:`quantize_model`
then copies those weights into the wrapped model (``quantize_apply`` does).
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Dict, Iterable, List, Optional, Set

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer

_tfmot_keras = tfmot.quantization.keras
QuantizeWrapperV2 = _tfmot_keras.QuantizeWrapperV2
_transforms = _tfmot_keras.graph_transformations.transforms
_model_transformer = _tfmot_keras.graph_transformations.model_transformer

# Layers whose *inputs* must be quantized, and layers a quantized tensor passes through unchanged.
QUANTIZED_INPUT_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense", "Multiply", "Add")
PASS_THROUGH_LAYERS = ("Dropout", "ZeroPadding2D")
# Weight attribute and its output-channel axis per layer class.
WEIGHT_AXES = {"Conv2D": ("kernel", 3), "DepthwiseConv2D": ("depthwise_kernel", 2), "Dense": ("kernel", 1)}
DEFAULT_EMA_DECAY = 0.99
FIXED_RANGES = 1.0  # ema_decay that keeps calibrated activation ranges during fine-tuning
CALIBRATION_METHODS = ("max", "mean", "percentile")
DEFAULT_CALIBRATION = "percentile"
DEFAULT_PERCENTILE = 99.99
DEFAULT_CALIBRATION_BATCHES = 8


def _fake_quant(x, amax, axis=None):
    """Symmetric int8 quantize-dequantize of ``x``: step ``amax / 127``, levels ``-128 .. 127``, zero point 0.

    The full int8 range, as pytorch-quantization's default (``narrow_range=False``) and as ONNX
    ``QuantizeLinear`` / TensorRT clamp: with the narrow range ``-127 .. 127`` TensorFlow saturated
    negatives one step above what the exported Q/DQ graph computes.

    Per-tensor (``amax`` a scalar) uses ``QuantizeAndDequantizeV4``, whose gradient is
    the straight-through estimator masked outside the range; per-channel (``amax``
    ``[C]`` along ``axis``) uses ``QuantizeAndDequantizeV3`` (plain straight-through),
    because V4 rejects per-channel ranges in this TensorFlow. tf2onnx converts both.
    """
    amax = tf.stop_gradient(tf.maximum(amax, 1e-8))
    if axis is None:
        return tf.quantization.quantize_and_dequantize_v2(
            x, -amax, amax, signed_input=True, num_bits=8, range_given=True, narrow_range=False)
    return tf.raw_ops.QuantizeAndDequantizeV3(
        input=x, input_min=-amax, input_max=amax, num_bits=tf.constant(8), signed_input=True,
        range_given=True, narrow_range=False, axis=axis)


class WeightQuantizer(_tfmot_keras.quantizers.Quantizer):
    """Per-channel symmetric int8 weights; ``amax`` along ``axis`` is ``max|w|`` of the current weights.

    Args:
      axis: output-channel axis of the weight (3 for Conv2D kernels
        ``[kh, kw, Cin, Cout]``, 2 for depthwise kernels ``[kh, kw, C, 1]``,
        1 for Dense kernels ``[Cin, Cout]``).
    """

    def __init__(self, axis: int):
        self.axis = int(axis)

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        reduce_axes = [i for i in range(inputs.shape.rank) if i != self.axis]
        return _fake_quant(inputs, tf.reduce_max(tf.abs(inputs), axis=reduce_axes), axis=self.axis)

    def get_config(self):
        return {"axis": self.axis}

    def __eq__(self, other):
        return isinstance(other, WeightQuantizer) and other.axis == self.axis


class ActivationQuantizer(_tfmot_keras.quantizers.Quantizer):
    """Per-tensor symmetric int8 activations with a moving-average range.

    In training, ``amax`` takes the first batch's ``max|x|`` and then follows
    ``amax = decay * amax + (1 - decay) * max|x|``; inference uses the stored
    ``amax`` (a model that has seen no batch has ``amax = 0``: see :func:`calibrate`).
    ``ema_decay = 1`` (``FIXED_RANGES``) keeps a range fixed once set, as
    pytorch-quantization does when fine-tuning after calibration.

    Args:
      ema_decay: decay of the moving average, in ``[0, 1]``.
    """

    def __init__(self, ema_decay: float = DEFAULT_EMA_DECAY):
        if not 0.0 <= ema_decay <= 1.0:
            raise ValueError(f"ema_decay must be in [0, 1]. Received: ema_decay={ema_decay}")
        self.ema_decay = float(ema_decay)
        self.percentile = None  # set by calibrate(): batch range = this percentile of |x|, not max|x|

    def build(self, tensor_shape, name, layer):
        amax = layer.add_weight(f"{name}_amax", shape=(), initializer=keras.initializers.Zeros(),
                                trainable=False, aggregation=tf.VariableAggregation.MEAN)
        return {"amax": amax}

    def __call__(self, inputs, training, weights, **kwargs):
        amax = weights["amax"]
        if training:
            batch_amax = self._batch_amax(tf.abs(tf.stop_gradient(inputs)))
            ema = self.ema_decay * amax + (1.0 - self.ema_decay) * batch_amax
            amax.assign(tf.where(amax > 0.0, ema, batch_amax))
        return _fake_quant(inputs, tf.identity(amax))

    def _batch_amax(self, magnitudes):
        """``max`` of ``magnitudes`` (``|x|``), or its ``percentile`` during percentile calibration."""
        if self.percentile is None:
            return tf.reduce_max(magnitudes)
        flat = tf.reshape(magnitudes, [-1])
        above = tf.cast(tf.math.ceil((1.0 - self.percentile / 100.0) * tf.cast(tf.size(flat), tf.float32)), tf.int32)
        return tf.reduce_min(tf.math.top_k(flat, tf.maximum(above, 1), sorted=False).values)

    def get_config(self):
        return {"ema_decay": self.ema_decay}

    def __eq__(self, other):
        return isinstance(other, ActivationQuantizer) and other.ema_decay == self.ema_decay


class LayerQuantizeConfig(_tfmot_keras.QuantizeConfig):
    """Quantizes a layer's weight (``weight_attr``, per channel along ``axis``) and/or its output.

    The layer's own activation function is left alone: a Dense with a swish
    or sigmoid activation gets its output quantized *after* the activation.

    Args:
      weight_attr: name of the weight attribute (``kernel``/``depthwise_kernel``), or None.
      axis: output-channel axis of that weight.
      quantize_output: add an :class:`ActivationQuantizer` on the output.
      ema_decay: decay of the output range's moving average.
    """

    def __init__(self, weight_attr=None, axis=-1, quantize_output=False, ema_decay=DEFAULT_EMA_DECAY):
        self.weight_attr, self.axis = weight_attr, int(axis)
        self.quantize_output, self.ema_decay = bool(quantize_output), float(ema_decay)

    def get_weights_and_quantizers(self, layer):
        if not self.weight_attr:
            return []
        return [(getattr(layer, self.weight_attr), WeightQuantizer(self.axis))]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        if self.weight_attr:
            setattr(layer, self.weight_attr, quantize_weights[0])

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [ActivationQuantizer(self.ema_decay)] if self.quantize_output else []

    def get_config(self):
        return {"weight_attr": self.weight_attr, "axis": self.axis,
                "quantize_output": self.quantize_output, "ema_decay": self.ema_decay}


class _InputQuantize(_transforms.Transform):
    """``InputLayer`` -> ``InputLayer -> QuantizeLayer(ActivationQuantizer)``."""

    def __init__(self, ema_decay: float):
        self.ema_decay = ema_decay

    def pattern(self):
        return _transforms.LayerPattern("InputLayer")

    def replacement(self, match_layer):
        layer = QuantizeLayer(ActivationQuantizer(self.ema_decay))
        config = {"class_name": "QuantizeLayer", "config": layer.get_config(), "name": layer.name}
        return _transforms.LayerNode(config, input_layers=[match_layer])

    def custom_objects(self):
        return custom_objects()


class _LayoutTransform(_tfmot_keras.QuantizeLayoutTransform):
    """Only adds the input quantizer; no Conv+BN rewrites (BN stays unfolded)."""

    def __init__(self, ema_decay: float):
        self.ema_decay = ema_decay

    def apply(self, model, layer_quantize_map):
        candidates = set(layer_quantize_map) | set(model.input_names)
        return _model_transformer.ModelTransformer(
            model, [_InputQuantize(self.ema_decay)], candidates, layer_quantize_map).transform()


class _EmptyRegistry(_tfmot_keras.QuantizeRegistry):
    """Every quantized layer is annotated explicitly, so the registry supports nothing."""

    def supports(self, layer):
        return False

    def get_quantize_config(self, layer):
        raise ValueError(f"Layer {layer.name} has no quantize annotation")


class TensorRTQuantizeScheme(_tfmot_keras.QuantizeScheme):
    """Symmetric int8 Q/DQ placement for TensorRT (see the module docstring)."""

    def __init__(self, ema_decay: float = DEFAULT_EMA_DECAY):
        self.ema_decay = ema_decay

    def get_layout_transformer(self):
        return _LayoutTransform(self.ema_decay)

    def get_quantize_registry(self):
        return _EmptyRegistry()


def custom_objects() -> Dict[str, object]:
    """Classes needed to deserialise (clone, load) a quantized model."""
    return {"QuantizeLayer": QuantizeLayer, "WeightQuantizer": WeightQuantizer,
            "ActivationQuantizer": ActivationQuantizer, "LayerQuantizeConfig": LayerQuantizeConfig}


def _consumers(model) -> Dict[str, List[str]]:
    """Layer name -> class names of the layers that read its output (through pass-through layers)."""
    layers = model.get_config()["layers"]
    classes = {layer["name"]: layer["class_name"] for layer in layers}
    direct: Dict[str, List[str]] = {name: [] for name in classes}
    for layer in layers:
        for node in layer["inbound_nodes"]:
            for inbound in node:
                direct[inbound[0]].append(layer["name"])

    def resolve(name, seen):
        out = []
        for consumer in direct[name]:
            if classes[consumer] in PASS_THROUGH_LAYERS and consumer not in seen:
                out += resolve(consumer, seen | {consumer})
            else:
                out.append(classes[consumer])
        return out

    return {name: resolve(name, {name}) for name in classes}


def quantize_plan(model, ema_decay: float = DEFAULT_EMA_DECAY) -> Dict[str, LayerQuantizeConfig]:
    """Layer name -> :class:`LayerQuantizeConfig` for every layer that gets a quantizer."""
    plan = {}
    for name, consumers in _consumers(model).items():
        class_name = model.get_layer(name).__class__.__name__
        weight_attr, axis = WEIGHT_AXES.get(class_name, (None, -1))
        quantize_output = any(c in QUANTIZED_INPUT_LAYERS for c in consumers)
        if class_name != "InputLayer" and (weight_attr or quantize_output):
            plan[name] = LayerQuantizeConfig(weight_attr, axis, quantize_output, ema_decay)
    return plan


def quantize_model(model, ema_decay: float = DEFAULT_EMA_DECAY):
    """QAT copy of a float functional ``model`` (its current weights are copied).

    Args:
      model: built functional tf-keras model (``build_efficientnet``), float32 policy.
    Returns:
      A functional model of the same inputs/outputs whose conv/dense layers and
      quantized outputs are ``QuantizeWrapperV2`` layers (names ``quant_<layer>``).
    """
    policy = keras.mixed_precision.global_policy().name
    if policy != "float32":
        raise ValueError(f"QAT models train and run in float32 (TF32 allowed). Received: policy={policy}")
    plan = quantize_plan(model, ema_decay)

    def annotate(layer):
        if layer.name not in plan:
            return layer
        return _tfmot_keras.quantize_annotate_layer(layer, plan[layer.name])

    with _tfmot_keras.quantize_scope(custom_objects()):
        annotated = keras.models.clone_model(model, clone_function=annotate)
        return _tfmot_keras.quantize_apply(annotated, TensorRTQuantizeScheme(ema_decay))


def is_quantized(model) -> bool:
    """True when ``model`` contains TF-MOT quantize wrappers."""
    return any(isinstance(layer, (_tfmot_keras.QuantizeWrapper, QuantizeLayer)) for layer in model.layers)


def _amax_variables(model) -> List[tf.Variable]:
    """The ``amax`` variable of every activation quantizer, in model order."""
    return [v for v in model.non_trainable_variables if v.name.split("/")[-1].split(":")[0].endswith("_amax")]


def activation_ranges(model) -> Dict[str, float]:
    """Variable name -> ``amax`` of every activation quantizer (0 where uncalibrated)."""
    return {v.name: float(v.numpy()) for v in _amax_variables(model)}


def _activation_quantizers(model) -> List[ActivationQuantizer]:
    """The :class:`ActivationQuantizer` objects of the input ``QuantizeLayer`` and the wrappers' outputs."""
    found = []
    for layer in model.layers:
        found += [layer.quantizer] if isinstance(layer, QuantizeLayer) else getattr(layer, "_output_quantizers", [])
    return [q for q in found if isinstance(q, ActivationQuantizer)]


@contextlib.contextmanager
def _calibration_mode(model, percentile: Optional[float]):
    """Freezes every BatchNormalization (inference statistics, no update), disables dropout and
    makes the activation quantizers measure the ``percentile`` of ``|x|`` (None: the max)."""
    quantizers = _activation_quantizers(model)
    for quantizer in quantizers:
        quantizer.percentile = percentile
    layers = [getattr(layer, "layer", layer) for layer in model.layers]  # look inside quantize wrappers
    batchnorms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    dropouts = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    states = [layer.trainable for layer in batchnorms], [layer.rate for layer in dropouts]
    for layer in batchnorms:
        layer.trainable = False
    for layer in dropouts:
        layer.rate = 0.0
    try:
        yield
    finally:
        for quantizer in quantizers:
            quantizer.percentile = None
        for layer, state in zip(batchnorms, states[0]):
            layer.trainable = state
        for layer, rate in zip(dropouts, states[1]):
            layer.rate = rate


def calibrate(model, batches: Iterable, steps: Optional[int] = None, method: str = DEFAULT_CALIBRATION,
              percentile: float = DEFAULT_PERCENTILE) -> int:
    """Sets every activation range from ``batches``, touching nothing else.

    Each batch runs through the model in training mode (so the activation
    quantizers measure their input) with BatchNormalization frozen and
    dropout off. A quantizer's range is then, over the batches:

    * ``max``: the max of the per-batch ``max|x|`` (pytorch-quantization's max calibrator);
    * ``mean``: the mean of the per-batch ``max|x|``;
    * ``percentile``: the mean of the per-batch ``percentile`` of ``|x|``
      (clips rare outliers; EfficientNet's swish/SE activations have long tails).

    Call it on a quantized model holding FP32 weights, before fine-tuning.

    Args:
      batches: iterable of ``[B, H, W, 3]`` float32 normalised images, or of
        ``(images, labels)`` pairs (a dataset).
      steps: use at most this many batches (None: all).
      method: one of ``CALIBRATION_METHODS``.
      percentile: in ``(0, 100]``, for ``method="percentile"``.
    Returns:
      Number of batches used.
    """
    if method not in CALIBRATION_METHODS or not 0.0 < percentile <= 100.0:
        raise ValueError(f"method must be one of {CALIBRATION_METHODS} and percentile in (0, 100]. "
                         f"Received: method={method}, percentile={percentile}")
    variables, seen = _amax_variables(model), []
    with _calibration_mode(model, percentile if method == "percentile" else None):
        for batch in itertools.islice(batches, steps):
            for variable in variables:
                variable.assign(0.0)  # an empty range takes the batch's statistic
            model(batch[0] if isinstance(batch, (tuple, list)) else batch, training=True)
            seen.append([float(v.numpy()) for v in variables])
    if seen:
        reduce = np.max if method == "max" else np.mean
        for variable, values in zip(variables, zip(*seen)):
            variable.assign(float(reduce(values)))
    return len(seen)


def quantized_layer_names(model) -> Set[str]:
    """Names of the wrapped layers (``quant_<layer>``) of a quantized model."""
    return {layer.name for layer in model.layers if isinstance(layer, _tfmot_keras.QuantizeWrapper)}
