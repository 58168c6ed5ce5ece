"""efficientnet_tf2.export_graph: the exported graph has no run-time shape arithmetic and the same outputs."""
import collections

import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf2 import export_graph, tflite_export
from efficientnet_tf2.model import build_classifier
from efficientnet_tf2.experiments import classifier_config


@pytest.fixture(scope="module")
def model():
    return build_classifier(classifier_config("efficientnet-b0", num_classes=10), input_shape=(32, 32, 3))


def test_for_export_gives_the_same_outputs_with_flat_squeeze_excitation(model):
    rebuilt = export_graph.for_export(model)
    flat = [layer for layer in rebuilt.layers if isinstance(layer, export_graph.FlatDense)]
    assert len(flat) == 32 and rebuilt is not model  # B0: 16 SE blocks x 2 Dense
    images = tf.random.stateless_uniform([3, 32, 32, 3], [1, 2])
    np.testing.assert_array_equal(rebuilt(images).numpy(), model(images).numpy())
    assert export_graph.for_export(rebuilt) is rebuilt  # nothing left to flatten


def test_the_tflite_file_has_no_shape_ops(model, tmp_path):
    pytest.importorskip("ai_edge_litert", reason="the [tflite] extra is not installed")
    from common.io import tflite_runtime

    path = tflite_export.export_tflite(model, str(tmp_path / "m.tflite"), 32)
    ops = collections.Counter(op["op_name"] for op in tflite_runtime.make_interpreter(path)._get_ops_details())
    assert not {"SHAPE", "GATHER", "REDUCE_PROD", "PACK"} & set(ops), ops
    crops = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8)
    assert tflite_export.compare_with_keras(model, path, crops)["max_abs_diff"] < 1e-5


def test_the_normalisation_is_one_depthwise_op_with_the_same_numbers(model, tmp_path):
    """``normalize_1x1`` = ``normalize`` to float rounding; the int8 file normalises with one DEPTHWISE_CONV_2D, no
    SUB and no broadcast MUL on the image (they cost 7.5 % of B0's int8 time at batch 1)."""
    pytest.importorskip("ai_edge_litert", reason="the [tflite] extra is not installed")
    from efficientnet_tf2 import qat_tflite
    from efficientnet_tf2.preprocessing import normalize

    pixels = tf.random.stateless_uniform([2, 32, 32, 3], [3, 4], maxval=255.0)
    np.testing.assert_allclose(export_graph.normalize_1x1(pixels).numpy(), normalize(pixels).numpy(), atol=1e-5)
    crops = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), np.uint8)
    path = tflite_export.export_tflite(model, str(tmp_path / "m.tflite"), 32, quantize="int8", calibration=crops)
    ops = qat_tflite.op_counts(open(path, "rb").read())
    assert "SUB" not in ops and ops["DEPTHWISE_CONV_2D"] == 16 + 1, ops  # B0's 16 blocks + the normalisation
