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
  model input gets a ``QuantizeLayer``. Per-tensor symmetric int8 with
  ``amax`` an exponential moving average of the batch ``max|x|`` during
  training, frozen at inference (:class:`ActivationQuantizer`). The swish
  activations need no rule of their own: their outputs are quantized where
  they feed a depthwise conv or the SE gate.

Both quantizers call ``tf.quantization.quantize_and_dequantize_v2`` (the
``QuantizeAndDequantizeV4`` op), which tf2onnx turns into int8
QuantizeLinear/DequantizeLinear pairs (per-axis for weights, opset >= 13).
BatchNorm stays unfolded, as with NVIDIA's pytorch-quantization; TensorRT
folds it when it builds the engine.

The float model is built and given its FP32 weights first; :func:`quantize_model`
then copies those weights into the wrapped model (``quantize_apply`` does).
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Set

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


def _fake_quant(x, amax, axis=None):
    """Symmetric int8 quantize-dequantize of ``x`` with range ``[-amax, amax]`` (narrow, zero point 0).

    Per-tensor (``amax`` a scalar) uses ``QuantizeAndDequantizeV4``, whose gradient is
    the straight-through estimator masked outside the range; per-channel (``amax``
    ``[C]`` along ``axis``) uses ``QuantizeAndDequantizeV3`` (plain straight-through),
    because V4 rejects per-channel ranges in this TensorFlow. tf2onnx converts both.
    """
    amax = tf.stop_gradient(tf.maximum(amax, 1e-8))
    if axis is None:
        return tf.quantization.quantize_and_dequantize_v2(
            x, -amax, amax, signed_input=True, num_bits=8, range_given=True, narrow_range=True)
    return tf.raw_ops.QuantizeAndDequantizeV3(
        input=x, input_min=-amax, input_max=amax, num_bits=tf.constant(8), signed_input=True,
        range_given=True, narrow_range=True, axis=axis)


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

    Args:
      ema_decay: decay of the moving average, in ``[0, 1)``.
    """

    def __init__(self, ema_decay: float = DEFAULT_EMA_DECAY):
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1). Received: ema_decay={ema_decay}")
        self.ema_decay = float(ema_decay)

    def build(self, tensor_shape, name, layer):
        amax = layer.add_weight(f"{name}_amax", shape=(), initializer=keras.initializers.Zeros(),
                                trainable=False, aggregation=tf.VariableAggregation.MEAN)
        return {"amax": amax}

    def __call__(self, inputs, training, weights, **kwargs):
        amax = weights["amax"]
        if training:
            batch_amax = tf.reduce_max(tf.abs(tf.stop_gradient(inputs)))
            ema = self.ema_decay * amax + (1.0 - self.ema_decay) * batch_amax
            amax.assign(tf.where(amax > 0.0, ema, batch_amax))
        return _fake_quant(inputs, tf.identity(amax))

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


def activation_ranges(model) -> Dict[str, float]:
    """Variable name -> ``amax`` of every activation quantizer (0 where uncalibrated)."""
    return {v.name: float(v.numpy()) for v in model.non_trainable_variables
            if v.name.split("/")[-1].split(":")[0].endswith("_amax")}


def calibrate(model, images: Iterable[tf.Tensor]) -> int:
    """Sets the activation ranges from ``images`` without touching BN statistics.

    Runs the model in training mode (quantizers update ``amax``) with every
    BatchNormalization frozen (inference statistics, no moving-average update).
    Dropout is active during these passes.

    Args:
      images: iterable of ``[B, H, W, 3]`` float32 normalised batches.
    Returns:
      Number of batches used.
    """
    layers = [getattr(layer, "layer", layer) for layer in model.layers]  # look inside quantize wrappers
    batchnorms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    states = [layer.trainable for layer in batchnorms]
    for layer in batchnorms:
        layer.trainable = False
    count = 0
    try:
        for batch in images:
            model(batch, training=True)
            count += 1
    finally:
        for layer, state in zip(batchnorms, states):
            layer.trainable = state
    return count


def quantized_layer_names(model) -> Set[str]:
    """Names of the wrapped layers (``quant_<layer>``) of a quantized model."""
    return {layer.name for layer in model.layers if isinstance(layer, _tfmot_keras.QuantizeWrapper)}
