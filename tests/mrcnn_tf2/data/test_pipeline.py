"""mrcnn_tf2.data.pipeline on a synthetic COCO set with an empty image, a crowd and a zero-area box.

Images are 48 x 64; with image_size (32, 48) the scale is 2/3, the scaled size 32 x 43 and
batches are padded to 32 x 64.
"""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from dataset import create_coco_tf_record as cctr
from dataset import make_synthetic_shapes as mss
from mrcnn_tf2.data import CocoDataset, InputConfig, build_dataset

CONFIG = InputConfig(image_size=(32, 48), pad_multiple=32, max_instances=5, gt_mask_size=8)
SCALE, SCALED_H, SCALED_W = 2.0 / 3.0, 32, 43
EMPTY_IDS, CROWD_ID = (3, 6), 1


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Paths of the synthetic set and its TFRecords (2 shards)."""
    root = tmp_path_factory.mktemp("shapes")
    paths = mss.make_dataset(str(root), num_train=6, num_val=1, image_size=(48, 64), seed=0,
                             empty_fraction=0.34, crowd=True, zero_area=True)
    cctr.create_tf_record(paths["train_images"], paths["train_annotations"],
                          str(root / "tfrecord" / "train"), 2, progress_stream=None)
    paths["tfrecords"] = str(root / "tfrecord" / "train-*")
    return paths


@pytest.fixture(scope="module")
def coco(shapes):
    return CocoDataset(shapes["train_annotations"], shapes["train_images"])


def collect(ds):
    """Dataset -> (source ids in order, {source id: {name: numpy array}})."""
    order, by_id = [], {}
    for features, labels in ds.as_numpy_iterator():
        for b, source_id in enumerate(features["source_ids"]):
            order.append(int(source_id))
            by_id[int(source_id)] = {k: v[b] for k, v in {**features, **labels}.items()}
    return order, by_id


@pytest.fixture(scope="module")
def evaluated(coco):
    return collect(build_dataset(coco, CONFIG, training=False, batch_size=4))[1]


@pytest.fixture(scope="module")
def trained(coco):
    """Training order and elements for seed 3, epoch 1, flip on."""
    return collect(build_dataset(coco, CONFIG, training=True, batch_size=2, seed=3, epoch=1))


def rows(element):
    """Number of non-padding GT rows."""
    return int((element["gt_classes"] >= 0).sum())


def test_static_shapes_and_dtypes(coco):
    features, labels = build_dataset(coco, CONFIG, training=True, batch_size=2).element_spec
    assert features == {"images": tf.TensorSpec([2, 32, 64, 3], tf.float32),
                        "image_info": tf.TensorSpec([2, 5], tf.float32),
                        "source_ids": tf.TensorSpec([2], tf.int64)}
    assert labels == {"gt_boxes": tf.TensorSpec([2, 5, 4], tf.float32),
                      "gt_classes": tf.TensorSpec([2, 5], tf.int32),
                      "gt_masks": tf.TensorSpec([2, 5, 8, 8], tf.float32)}


def test_eval_boxes_are_json_boxes_times_scale(coco, evaluated):
    assert sorted(evaluated) == coco.image_ids
    for index, image_id in enumerate(coco.image_ids):
        element, record = evaluated[image_id], coco.record(index)
        np.testing.assert_allclose(element["image_info"], [32, 43, SCALE, 48, 64], rtol=1e-6)
        keep = ~record["is_crowd"]
        expected = np.minimum(record["boxes"][keep] * SCALE, [32, 43, 32, 43])
        n = len(expected)
        assert rows(element) == n
        np.testing.assert_allclose(element["gt_boxes"][:n], expected, rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(element["gt_classes"][:n], record["classes"][keep])
        np.testing.assert_array_equal(element["gt_boxes"][n:], -1.0)


def test_gt_masks_cover_the_object_part_of_each_box(coco, evaluated):
    for index, image_id in enumerate(coco.image_ids):
        record, element = coco.record(index, with_masks=True), evaluated[image_id]
        masks = record["masks"][~record["is_crowd"]]
        for i, (ymin, xmin, ymax, xmax) in enumerate(record["boxes"][~record["is_crowd"]]):
            box = masks[i, int(ymin):int(np.ceil(ymax)), int(xmin):int(np.ceil(xmax))]
            gt_mask = element["gt_masks"][i]
            assert 0.0 <= gt_mask.min() and gt_mask.max() <= 1.0
            assert abs(gt_mask.mean() - box.mean()) < 0.12
        np.testing.assert_array_equal(element["gt_masks"][len(masks):], 0.0)


def test_images_are_normalised_resized_and_zero_padded(evaluated):
    mean, std = np.array(CONFIG.mean), np.array(CONFIG.std)
    for element in evaluated.values():
        image = element["images"]
        np.testing.assert_array_equal(image[:, SCALED_W:], 0.0)
        pixels = image[:, :SCALED_W] * std + mean
        assert pixels.min() > -1 and pixels.max() < 256 and pixels.std() > 10


def test_image_without_objects_gives_padding_only(evaluated, trained):
    for image_id in EMPTY_IDS:
        for element in (evaluated[image_id], trained[1][image_id]):
            np.testing.assert_array_equal(element["gt_classes"], -1)
            np.testing.assert_array_equal(element["gt_boxes"], -1.0)
            np.testing.assert_array_equal(element["gt_masks"], 0.0)


def test_crowd_is_skipped_unless_asked(coco, evaluated, trained):
    record = coco.record(coco.image_ids.index(CROWD_ID))
    assert record["is_crowd"].sum() == 1
    assert rows(evaluated[CROWD_ID]) == rows(trained[1][CROWD_ID]) == len(record["classes"]) - 1
    config = dataclasses.replace(CONFIG, skip_crowd=False)
    _, with_crowd = collect(build_dataset(coco, config, training=False, batch_size=6))
    np.testing.assert_array_equal(with_crowd[CROWD_ID]["gt_classes"][:len(record["classes"])],
                                  record["classes"])


def test_flip_mirrors_boxes_masks_and_images(coco, trained):
    config = dataclasses.replace(CONFIG, flip=False)
    order, plain = collect(build_dataset(coco, config, training=True, batch_size=2, seed=3,
                                         epoch=1))
    assert order == trained[0]
    flipped = 0
    for image_id, element in trained[1].items():
        ref, n = plain[image_id], rows(element)
        if np.array_equal(element["images"], ref["images"]):
            np.testing.assert_array_equal(element["gt_boxes"], ref["gt_boxes"])
            continue
        flipped += 1
        mirrored = ref["gt_boxes"][:n].copy()
        mirrored[:, 1], mirrored[:, 3] = SCALED_W - ref["gt_boxes"][:n, 3], SCALED_W - ref[
            "gt_boxes"][:n, 1]
        np.testing.assert_allclose(element["gt_boxes"][:n], mirrored, atol=1e-4)
        np.testing.assert_allclose(element["gt_masks"], ref["gt_masks"][..., ::-1], atol=1e-5)
        np.testing.assert_allclose(element["images"][:, :SCALED_W],
                                   ref["images"][:, SCALED_W - 1::-1], atol=1e-4)
    assert 0 < flipped < len(trained[1]) - len(EMPTY_IDS)


def test_tfrecord_source_matches_json_source(coco, shapes, evaluated):
    ds = build_dataset(shapes["tfrecords"], CONFIG, training=False, batch_size=4,
                       category_ids=coco.category_ids, num_classes=4)
    order, from_records = collect(ds)
    assert sorted(order) == coco.image_ids
    for image_id, element in from_records.items():
        for key, value in evaluated[image_id].items():
            np.testing.assert_allclose(element[key], value, atol=1e-4, err_msg=key)


def test_order_and_flips_depend_only_on_seed_and_epoch(coco, trained):
    again = collect(build_dataset(coco, CONFIG, training=True, batch_size=2, seed=3, epoch=1))
    assert again[0] == trained[0]
    for image_id, element in trained[1].items():
        for key, value in element.items():
            np.testing.assert_array_equal(again[1][image_id][key], value)
    other = build_dataset(coco, CONFIG, training=True, batch_size=2, seed=3, epoch=2)
    assert collect(other)[0] != trained[0]


def test_input_context_shards_and_splits_the_batch(coco):
    orders = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(2, pipeline_id, 2)
        ds = build_dataset(coco, CONFIG, training=True, batch_size=2, input_context=context)
        assert ds.element_spec[0]["images"].shape[0] == 1
        orders.append(collect(ds)[0])
    assert len(orders[0]) == len(orders[1]) == 3
    assert sorted(orders[0] + orders[1]) == coco.image_ids


def test_argument_errors(coco, shapes, tmp_path):
    with pytest.raises(ValueError, match="needs category_ids"):
        build_dataset(shapes["tfrecords"], CONFIG, training=True, batch_size=2)
    with pytest.raises(ValueError, match="num_classes=3"):
        build_dataset(coco, CONFIG, training=True, batch_size=2, num_classes=3)
    with pytest.raises(FileNotFoundError, match="nothing-"):
        build_dataset(str(tmp_path / "nothing-*"), CONFIG, training=False, batch_size=2,
                      category_ids=coco.category_ids)
    with pytest.raises(TypeError, match="CocoDataset or a TFRecord"):
        build_dataset(42, CONFIG, training=True, batch_size=2)


def test_a_missing_image_is_left_out_before_the_pipeline_starts(tmp_path):
    """Checked when the annotations are loaded, so the pipeline never meets it mid-epoch."""
    paths = mss.make_dataset(str(tmp_path), num_train=2, num_val=1, image_size=32)
    (tmp_path / "train" / "000000000002.jpg").unlink()
    coco = CocoDataset(paths["train_annotations"], paths["train_images"])
    assert "000000000002.jpg" in coco.report.problems[0][0] and len(coco) == 1
    order, _ = collect(build_dataset(coco, CONFIG, training=False, batch_size=2))
    assert order == [1]


def test_tfrecord_label_missing_from_category_ids_fails(shapes):
    ds = build_dataset(shapes["tfrecords"], CONFIG, training=False, batch_size=6,
                       category_ids=[0, 1, 3])                 # no COCO id 7 ("triangle")
    with pytest.raises(tf.errors.InvalidArgumentError, match="not in category_ids"):
        collect(ds)
