"""Quantization-aware models to TFLite full int8, with the activation ranges they were trained with.

TFLite's converter cannot read this project's QAT models as they are: their quantizers are TensorRT's (symmetric
int8 on the inputs of convolutions, the SE gate and residual adds, BatchNorm unfolded), while TFLite quantizes
every tensor and reads ranges only from its own fake-quant ops. Converting the trained weights with TFLite's
calibration instead loses what QAT learned: without the quantizers' clipping the float graph's activations run
far wider than the QAT model's (logits up to 1787 against 106 on the test suite's 32 px model), so the calibrated
ranges are coarse (93.5 % top-1 against the QAT model's 99.0 on the demo). Here:

1. :func:`clipped_float_model`: the float model underneath the QAT one (same layers, the trained weights) with
   ``clip(x, -amax, amax)`` wherever QAT quantizes an activation (its calibrated and fine-tuned ``amax``): in
   float, what the fake-quant does to the range.
2. TFLite calibrates that graph (every other tensor's range comes from activations that saw QAT's clipping).
3. :func:`drop_clips`: each clip's input takes the clip's calibrated range, then the clip ops go: in int8 the
   saturation at that range is the clip. Weights: TFLite folds BatchNorm into the convolution and quantizes per
   output channel symmetrically, the grid QAT trained with (BN's scale is per channel).

The file has the FP32 export's contract and ops (no ``MINIMUM``/``MAXIMUM`` left: the same XNNPACK graph as a
post-training int8 file).
"""
from __future__ import annotations

import collections
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from efficientnet_tf2 import export_graph, qat

QAT_PREFIX = "quant_"


class Clipped(keras.layers.Wrapper):
    """``layer`` with its input and/or output clipped to ``[-amax, amax]`` (a QAT quantizer's range, in float).

    Args:
      layer: the wrapped layer (its weights are this layer's weights).
      input_amax: clip the input first (the QAT model's input quantizer), or None.
      output_amax: clip the output (the layer's output quantizer), or None.
    """

    def __init__(self, layer, input_amax: Optional[float] = None, output_amax: Optional[float] = None, **kwargs):
        super().__init__(layer, name=layer.name, **kwargs)
        self.input_amax, self.output_amax = input_amax, output_amax

    def call(self, inputs):
        if self.input_amax is not None:
            inputs = tf.clip_by_value(inputs, -self.input_amax, self.input_amax)
        outputs = self.layer(inputs)
        if self.output_amax is not None:
            outputs = tf.clip_by_value(outputs, -self.output_amax, self.output_amax)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def trained_ranges(qat_model) -> Dict[str, float]:
    """Float layer name -> ``amax`` of its output quantizer; the input quantizer's under ``""``."""
    ranges = {}
    for layer in qat_model.layers:
        amax = [v for v in layer.non_trainable_variables if v.name.split("/")[-1].split(":")[0].endswith("_amax")]
        if not amax:
            continue
        name = "" if not isinstance(layer, qat.QuantizeWrapperV2) else layer.name[len(QAT_PREFIX):]
        ranges[name] = float(amax[0].numpy())
    return ranges


def copy_trained_weights(qat_model, float_model) -> None:
    """Every variable of ``float_model`` takes the value of the QAT model's variable of the same name (the
    wrappers keep their layer's variables under the layer's name: ``stem_conv/kernel``).

    Raises:
      ValueError: a variable without a counterpart of the same shape.
    """
    trained = {variable.name: variable for variable in qat_model.weights}
    for variable in float_model.weights:
        source = trained.get(variable.name)
        if source is None or source.shape != variable.shape:
            raise ValueError(f"the QAT model has no variable matching {variable.name} {variable.shape}")
        variable.assign(source)


def clipped_float_model(qat_model, build_float: Callable[[], keras.Model]):
    """The float model (``build_float()``, the QAT model's architecture unquantized) with the QAT model's weights,
    a clip at each QAT activation range, and export's :class:`~efficientnet_tf2.export_graph.FlatDense`.

    Returns:
      A functional model ``[B, S, S, 3]`` normalised images -> ``[B, C]`` logits.
    """
    float_model = build_float()
    copy_trained_weights(qat_model, float_model)
    ranges = trained_ranges(qat_model)
    first = {node.outbound_layer.name for node in float_model.layers[0]._outbound_nodes}

    def clone(layer):
        copy = export_graph.exportable_copy(layer)
        input_amax = ranges.get("") if layer.name in first else None
        if layer.name in ranges or input_amax is not None:
            return Clipped(copy, input_amax=input_amax, output_amax=ranges.get(layer.name))
        return copy

    rebuilt = keras.models.clone_model(float_model, clone_function=clone)
    rebuilt.set_weights(float_model.get_weights())
    return rebuilt


# ------------------------------------------------------------------ flatbuffer edit
def _scalar(model, graph, index: int) -> Optional[float]:
    """The value of a constant float32 scalar tensor, else None."""
    data = model.buffers[graph.tensors[index].buffer].data
    return None if data is None or len(data) != 4 else float(np.frombuffer(bytes(data), np.float32)[0])


def _clip_chains(model, graph) -> List[tuple]:
    """``(minimum_op, maximum_op, x, y, out)`` of each ``out = MAXIMUM(y = MINIMUM(x, a), -a)`` (``clip_by_value``)."""
    from tensorflow.lite.tools import flatbuffer_utils

    name = lambda op: flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
    producer = {t: i for i, op in enumerate(graph.operators) for t in op.outputs}
    chains = []
    for i, op in enumerate(graph.operators):
        if name(op) != "MAXIMUM" or op.inputs[0] not in producer:
            continue
        j = producer[op.inputs[0]]
        inner = graph.operators[j]
        low, high = _scalar(model, graph, op.inputs[1]), (
            _scalar(model, graph, inner.inputs[1]) if name(inner) == "MINIMUM" else None)
        if low is not None and high is not None and np.isclose(low, -high):
            chains.append((j, i, int(inner.inputs[0]), int(inner.outputs[0]), int(op.outputs[0])))
    return chains


def drop_clips(calibrated: bytes) -> bytes:
    """A calibrated float TFLite model with each clip's range moved to its input and the clip ops removed.

    Args:
      calibrated: the converter's calibrate-only output (tensor ``min``/``max`` statistics).
    Returns:
      The model, still float with statistics, for the quantizer.
    Raises:
      ValueError: no clip found (not a :func:`clipped_float_model` graph).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = model.subgraphs[0]
    chains = _clip_chains(model, graph)
    if not chains:
        raise ValueError("no clip_by_value in the calibrated model")
    rewire, removed = {}, set()
    for minimum, maximum, x, y, out in chains:  # in graph order; a clip of a clip (through Dropout) goes to the root
        x = rewire.get(x, x)
        stats = graph.tensors[out].quantization
        for index in (x, y):
            graph.tensors[index].quantization.min = np.array(stats.min, np.float32)
            graph.tensors[index].quantization.max = np.array(stats.max, np.float32)
        rewire[out], removed = x, removed | {minimum, maximum}
    for op in graph.operators:
        op.inputs = np.array([rewire.get(int(t), int(t)) for t in op.inputs], np.int32)
    graph.outputs = np.array([rewire.get(int(t), int(t)) for t in graph.outputs], np.int32)
    for signature in model.signatureDefs or []:
        for tensor in signature.outputs:
            tensor.tensorIndex = rewire.get(tensor.tensorIndex, tensor.tensorIndex)
    graph.operators = [op for i, op in enumerate(graph.operators) if i not in removed]
    _drop_unused_tensors(model, graph)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _drop_unused_tensors(model, graph) -> None:
    """Removes tensors no op or graph input/output uses (the removed clips' outputs and bounds), renumbering the
    rest: the converter's importer reads a tensor that nothing produces as a constant and fails on an empty one."""
    used = sorted({int(t) for op in graph.operators for t in (*op.inputs, *op.outputs) if t >= 0}
                  | {int(t) for t in (*graph.inputs, *graph.outputs)})
    new = {old: i for i, old in enumerate(used)}
    renumber = lambda indices: np.array([new[int(t)] if t >= 0 else -1 for t in indices], np.int32)
    for op in graph.operators:
        op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = renumber(op.intermediates)
    graph.inputs, graph.outputs = renumber(graph.inputs), renumber(graph.outputs)
    graph.tensors = [graph.tensors[old] for old in used]
    for signature in model.signatureDefs or []:
        for tensor in (*signature.inputs, *signature.outputs):
            tensor.tensorIndex = new[tensor.tensorIndex]


def quantize(calibrated: bytes) -> bytes:
    """The converter's calibrate-only output of a :func:`clipped_float_model` -> the full int8 flatbuffer (uint8
    input and float outputs as the signature has them)."""
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(drop_clips(calibrated), disable_per_channel=False,
                                 input_data_type=tf.float32, output_data_type=tf.float32)


def op_counts(flat: bytes) -> Dict[str, int]:
    """Op type -> count of a TFLite flatbuffer's main graph."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    return dict(collections.Counter(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
                                    for op in model.subgraphs[0].operators))
