"""onnx_network: the network graph of ``--runtime onnxruntime`` stands in for the Keras model.

Tiny random-weight config with score threshold 0 (every one of its D slots is a detection), so
boxes, classes, scores and masks of all slots are compared. The CLI paths (eval / infer with
``--runtime onnxruntime`` against ``--runtime tf``) are in test_cli.py and, on a trained model, in
test_convergence.py.
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

pytest.importorskip("onnxruntime", reason="the onnx extra (tf2onnx, onnx, onnxruntime) is not installed")

from mrcnn_tf2 import onnx_export, onnx_network  # noqa: E402
from mrcnn_tf2.data.inputs import InputConfig  # noqa: E402
from mrcnn_tf2.export import preprocess_batch  # noqa: E402
from mrcnn_tf2.modeling.mask_rcnn import MaskRCNN  # noqa: E402
from mrcnn_tf2.testing import tiny_config  # noqa: E402

TINY = tiny_config(**{"detection.score_threshold": 0.0})
D = TINY.detection.max_detections
INPUT = InputConfig(image_size=(96, 128))
PADDED = INPUT.batch_padded_size()


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return MaskRCNN(TINY, seed=0)


@pytest.fixture(scope="module")
def network(model, tmp_path_factory):
    return onnx_network.export_network(model, str(tmp_path_factory.mktemp("onnx") / "network.onnx"), PADDED)


def network_inputs(batch: int):
    """Preprocessed (float, padded) images of two sizes and their image_info, as eval feeds them."""
    rng = np.random.default_rng(batch)
    images = tf.constant(rng.integers(0, 256, (batch, 100, 150, 3), dtype=np.uint8))
    return preprocess_batch(images, INPUT, PADDED)


@pytest.mark.parametrize("batch", [1, 2])
def test_stand_in_matches_keras_inside_a_tf_function(model, network, batch):
    images, info = network_inputs(batch)
    runner = onnx_network.OnnxMaskRCNN(network, model.config, PADDED)
    call = tf.function(lambda m, x, i: m({"images": x, "image_info": i}, training=False))
    got = {k: v.numpy() for k, v in call(runner, images, info).items()}
    want = {k: v.numpy() for k, v in model({"images": images, "image_info": info}, training=False).items()}
    assert sorted(got) == sorted(want) == sorted(onnx_network.OUTPUTS)
    assert got["num_detections"].tolist() == want["num_detections"].tolist() == [D] * batch
    np.testing.assert_array_equal(got["detection_classes"], want["detection_classes"])
    assert np.abs(got["detection_boxes"] - want["detection_boxes"]).max() <= onnx_export.BOX_TOLERANCE
    assert np.abs(got["detection_scores"] - want["detection_scores"]).max() <= onnx_export.SCORE_TOLERANCE
    assert got["detection_masks"].shape == (batch, D, 28, 28)
    ious = onnx_export.mask_ious(got["detection_masks"][0] >= 0.5, want["detection_masks"][0] >= 0.5)
    assert ious.min() >= onnx_export.MIN_MASK_IOU
    for key, value in got.items():
        assert value.dtype == want[key].dtype, key


def test_graph_records_its_kind_and_input_size(network):
    import onnx

    meta = {p.key: p.value for p in onnx.load(network).metadata_props}
    assert meta["graph"] == "network" and meta["image_size"] == f"{PADDED[0]},{PADDED[1]}"


def test_wrong_files_are_one_line_errors(model, network, tmp_path):
    with pytest.raises(SystemExit, match="exported for input size"):
        onnx_network.OnnxMaskRCNN(network, model.config, (PADDED[0] + 32, PADDED[1]))
    serving = str(tmp_path / "serving.onnx")  # the serving graph's input (uint8 images), not its body
    _identity_graph(serving)
    with pytest.raises(SystemExit, match="not a Mask R-CNN network graph") as error:
        onnx_network.OnnxMaskRCNN(serving, model.config, PADDED)
    assert "\n" not in str(error.value)


def _identity_graph(path: str) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.UINT8, [None, None, None, 3])
    y = helper.make_tensor_value_info("out", TensorProto.UINT8, [None, None, None, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "serving", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_stand_in_runs_inference_only(model, network):
    runner = onnx_network.OnnxMaskRCNN(network, model.config, PADDED)
    images, info = network_inputs(1)
    with pytest.raises(ValueError, match="inference only"):
        runner({"images": images, "image_info": info}, training=True)
