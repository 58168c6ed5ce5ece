"""Tests for dataset.create_coco_tf_record: shard names, round trip of every feature, errors."""
import io
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dataset import create_coco_tf_record as cctr
from dataset import make_synthetic_shapes as mss
from mrcnn_tf2.data.coco import CocoDataset
from mrcnn_tf2.data.pipeline import TFRECORD_FEATURES


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Synthetic COCO (4 train images: a crowd, a zero-area box, one image without objects)."""
    return mss.make_dataset(str(tmp_path_factory.mktemp("shapes")), num_train=4, num_val=1,
                            image_size=(32, 48), empty_fraction=0.25, crowd=True,
                            zero_area=True)


def read_examples(paths):
    """{source_id: tf.train.Example} of all records in `paths`."""
    examples = {}
    for path in paths:
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            example = tf.train.Example.FromString(raw)
            examples[int(feature(example, "image/source_id")[0])] = example
    return examples


def feature(example, key):
    """Values of one feature as a list."""
    f = example.features.feature[key]
    return list(getattr(f, f.WhichOneof("kind")).value)


def test_shards_round_trip(shapes, tmp_path):
    stream = io.StringIO()
    paths = cctr.create_tf_record(shapes["train_images"], shapes["train_annotations"],
                                  str(tmp_path / "out" / "train"), 3, progress_stream=stream)
    assert [os.path.basename(p) for p in paths] == [
        f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert stream.getvalue().endswith("] 4/4 images\n")
    counts = [sum(1 for _ in tf.data.TFRecordDataset(p)) for p in paths]
    assert counts == [2, 1, 1]                                  # image i -> shard i % 3
    coco = CocoDataset(shapes["train_annotations"], shapes["train_images"])
    examples = read_examples(paths)
    assert sorted(examples) == coco.image_ids
    for index, image_id in enumerate(coco.image_ids):
        check_example(examples[image_id], coco, index)


def check_example(example, coco, index):
    """Every feature of `example` matches record `index` of `coco`."""
    record = coco.record(index, with_masks=True)
    assert set(TFRECORD_FEATURES) <= set(example.features.feature)
    with open(record["path"], "rb") as f:
        assert feature(example, "image/encoded") == [f.read()]
    assert feature(example, "image/format") == [b"jpeg"]
    assert feature(example, "image/height") == [32] and feature(example, "image/width") == [48]
    assert feature(example, "image/filename") == [os.path.basename(record["path"]).encode()]
    boxes = np.stack([feature(example, f"image/object/bbox/{k}")
                      for k in ("ymin", "xmin", "ymax", "xmax")], axis=-1).reshape(-1, 4)
    assert boxes.min(initial=0) >= 0 and boxes.max(initial=1) <= 1
    np.testing.assert_allclose(boxes * [32, 48, 32, 48], record["boxes"], atol=1e-4)
    labels = feature(example, "image/object/class/label")
    assert labels == [coco.category_ids[c] for c in record["classes"]]
    assert feature(example, "image/object/class/text") == [
        coco.class_names[c].encode() for c in record["classes"]]
    assert feature(example, "image/object/is_crowd") == [int(c) for c in record["is_crowd"]]
    np.testing.assert_allclose(feature(example, "image/object/area"), record["areas"])
    masks = [np.asarray(Image.open(io.BytesIO(png))) for png in
             feature(example, "image/object/mask")]
    np.testing.assert_array_equal(np.reshape(masks, (-1, 32, 48)), record["masks"])


def test_edge_cases_survive(shapes, tmp_path):
    paths = cctr.create_tf_record(shapes["train_images"], shapes["train_annotations"],
                                  str(tmp_path / "train"), 1, progress_stream=None)
    examples = read_examples(paths)
    first, empty = examples[1], examples[4]
    assert 1 in feature(first, "image/object/is_crowd")
    assert min(feature(first, "image/object/area")) > 0          # zero-area box dropped
    assert feature(empty, "image/object/mask") == []
    assert feature(empty, "image/object/class/label") == []


def test_missing_images_are_named_and_left_out_or_refused(shapes, tmp_path, caplog):
    from common.command.errors import DataError

    missing = os.path.join(str(tmp_path), "images")
    os.makedirs(missing)
    with pytest.raises(DataError, match=r"images/000001000001\.jpg: image file not found"):
        cctr.create_tf_record(missing, shapes["val_annotations"], str(tmp_path / "val"), 1,
                              progress_stream=None, strict=True)
    partial = os.path.join(str(tmp_path), "partial")
    shutil.copytree(shapes["val_images"], partial)
    os.remove(os.path.join(partial, "000001000001.jpg"))
    paths = cctr.create_tf_record(partial, shapes["val_annotations"], str(tmp_path / "val"), 1, progress_stream=None)
    assert "000001000001.jpg: image file not found" in caplog.text
    assert sum(1 for _ in tf.data.TFRecordDataset(paths)) == len(os.listdir(partial))


def test_cli(shapes, tmp_path, capsys):
    cctr.main(["--image_dir", shapes["val_images"], "--object_annotations_file",
               shapes["val_annotations"], "--output_file_prefix", str(tmp_path / "val"),
               "--num_shards", "2"])
    assert "val-00001-of-00002.tfrecord" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "val-00000-of-00002.tfrecord")
    with pytest.raises(ValueError, match="num_shards=0"):
        cctr.create_tf_record(shapes["val_images"], shapes["val_annotations"],
                              str(tmp_path / "x"), 0)
