"""Tests for efficientnet_tf2.data (fixture `imagefolder` in conftest.py)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf2 import data, preprocessing

TRAIN_FILES = {  # class -> image-extension files (readable or not), sorted
    "ant": ["UPPER.JPEG", "rgb.jpg", "truncated.jpg"],
    "bee": ["cmyk.jpg", "corrupt.png", "gray.jpg"],
    "cat": ["nested/deep.jpg", "plain.png", "rgba.png"],
}
UNREADABLE_TRAIN = 2  # truncated.jpg, corrupt.png
VAL_LABELS = [0, 1, 2, 2]  # val/cat/broken.jpg is unreadable


def labels_of(ds):
    """Concatenated labels of a batched dataset, as a list."""
    return [int(y) for _, labels in ds for y in labels]


def make_tree(root, files):
    """Creates empty files (relative paths) under root; returns str(root)."""
    for rel in files:
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        open(os.path.join(root, rel), "wb").close()
    return str(root)


# ------------------------------------------------------------------ listing
def test_list_image_folder_train(imagefolder):
    paths, labels, classes = data.list_image_folder(imagefolder, "train")
    assert classes == ["ant", "bee", "cat"]
    expected = [os.path.join(imagefolder, "train", c, f)
                for c in classes for f in TRAIN_FILES[c]]
    assert paths == expected  # .txt ignored, extensions case-insensitive, recursive
    assert labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_val_uses_train_class_map(imagefolder):
    _, labels, classes = data.list_image_folder(imagefolder, "val")
    assert classes == ["ant", "bee", "cat"] and labels == [0, 1, 2, 2, 2]


def test_val_class_missing_from_train_is_an_error(tmp_path):
    root = make_tree(tmp_path, ["train/a/1.jpg", "val/a/2.jpg", "val/zebra/3.jpg"])
    with pytest.raises(ValueError, match=r"val has class folders not present in .*train: \['zebra'\]"):
        data.list_image_folder(root, "val")


def test_missing_split_names_the_path(tmp_path):
    root = make_tree(tmp_path, ["train/a/1.jpg"])
    with pytest.raises(FileNotFoundError, match=os.path.join(root, "val")):
        data.list_image_folder(root, "val")


def test_val_without_train_needs_class_names(tmp_path):
    root = make_tree(tmp_path, ["val/a/1.jpg", "val/b/2.png"])
    with pytest.raises(FileNotFoundError, match="pass class_names"):
        data.list_image_folder(root, "val")
    _, labels, _ = data.list_image_folder(root, "val", class_names=["a", "b", "c"])
    assert labels == [0, 1]


def test_empty_split_names_the_path(tmp_path):
    root = make_tree(tmp_path, ["train/a/readme.txt", "train/b/.hidden.jpg"])
    with pytest.raises(ValueError, match=f"No images .* under {os.path.join(root, 'train')}"):
        data.list_image_folder(root, "train")


def test_check_num_classes_message(imagefolder):
    train_dir = os.path.join(imagefolder, "train")
    with pytest.raises(ValueError) as error:
        data.build_dataset(imagefolder, "val", 16, 2, training=False, num_classes=1000)
    assert str(error.value) == (f"--num-classes 1000 but {train_dir} has 3 class folders "
                                "(ant, bee, cat): pass --num-classes 3")
    names = [f"c{i}" for i in range(10)]
    with pytest.raises(ValueError, match=r"\(c0, c1, c2, c3, c4, \.\.\.\): pass --num-classes 10"):
        data.check_num_classes(names, 1000, "/x/train")
    data.check_num_classes(names, 10)


# ----------------------------------------------------------------- decoding
def decode(root, rel):
    return data.decode_image_file(os.path.join(root, rel)).numpy()


def test_decode_image_file_colour_modes(imagefolder):
    gray, cmyk = decode(imagefolder, "train/bee/gray.jpg"), decode(imagefolder, "train/bee/cmyk.jpg")
    rgba, png = decode(imagefolder, "train/cat/rgba.png"), decode(imagefolder, "train/cat/plain.png")
    for image in (gray, cmyk, rgba, png):
        assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    assert np.abs(gray.astype(int) - 128).max() <= 2
    assert np.abs(cmyk.astype(int) - [200, 30, 40]).max() <= 6
    np.testing.assert_array_equal(rgba[0, 0], [10, 200, 30])
    np.testing.assert_array_equal(png[0, 0], [10, 20, 230])


# ----------------------------------------------------------------- datasets
@pytest.mark.parametrize("skip_mode", data.SKIP_MODES)
def test_train_skips_unreadable_images_and_counts_them(imagefolder, skip_mode):
    counter = data.SkipCounter()
    ds = data.build_dataset(imagefolder, "train", 16, 3, training=True, seed=0,
                            drop_remainder=False, skip_counter=counter, skip_mode=skip_mode)
    assert ds.element_spec[0].shape.as_list() == [None, 16, 16, 3]
    seen = []
    for images, labels in ds:
        assert images.dtype == tf.float32 and labels.dtype == tf.int32
        seen += labels.numpy().tolist()
    assert sorted(seen) == [0, 0, 1, 1, 2, 2, 2]
    assert counter.count == UNREADABLE_TRAIN
    counter.reset()
    assert counter.count == 0


def test_train_batches_have_static_shape_and_drop_remainder(imagefolder):
    ds = data.build_dataset(imagefolder, "train", 16, 3, training=True, augment="none")
    assert ds.element_spec[0].shape.as_list() == [3, 16, 16, 3]
    assert ds.element_spec[1].shape.as_list() == [3]
    assert len(labels_of(ds)) == 6


def test_train_is_reproducible_with_a_seed(imagefolder):
    def first_epoch():
        ds = data.build_dataset(imagefolder, "train", 16, 7, training=True, seed=3)
        return next(iter(ds))
    (a_images, a_labels), (b_images, b_labels) = first_epoch(), first_epoch()
    np.testing.assert_array_equal(a_labels, b_labels)
    np.testing.assert_array_equal(a_images, b_images)


@pytest.mark.parametrize("skip_mode", data.SKIP_MODES)
def test_cached_train_reshuffles_and_counts_skips_once(imagefolder, skip_mode):
    counter = data.SkipCounter()
    ds = data.build_dataset(imagefolder, "train", 16, 7, training=True, augment="none",
                            cache_decoded=True, skip_counter=counter, skip_mode=skip_mode)
    epochs = [labels_of(ds) for _ in range(3)]
    assert all(sorted(e) == [0, 0, 1, 1, 2, 2, 2] for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled after the cache
    assert counter.count == UNREADABLE_TRAIN


@pytest.mark.parametrize("skip_mode", data.SKIP_MODES)
def test_eval_is_deterministic_and_centre_cropped(imagefolder, skip_mode):
    counter = data.SkipCounter()
    runs = [list(data.build_dataset(imagefolder, "val", 16, 3, training=False,
                                    skip_counter=counter, skip_mode=skip_mode))
            for _ in range(2)]
    labels = [np.concatenate([y for _, y in run]).tolist() for run in runs]
    assert labels == [VAL_LABELS, VAL_LABELS]
    for (a, _), (b, _) in zip(*runs):
        np.testing.assert_array_equal(a, b)
    assert counter.count == 2  # val/cat/broken.jpg, once per run
    first = runs[0][0][0][0].numpy()  # val/ant/a.jpg, solid (200, 30, 40)
    want = preprocessing.normalize(tf.constant([200, 30, 40], tf.uint8)).numpy()
    np.testing.assert_allclose(first.mean(axis=(0, 1)), want, atol=0.05)


def test_exact_mode_logs_the_skipped_path(imagefolder, capfd):
    ds = data.build_dataset(imagefolder, "val", 16, 8, training=False, skip_mode="exact")
    assert labels_of(ds) == VAL_LABELS
    broken = os.path.join(imagefolder, "val", "cat", "broken.jpg")
    assert f'skipped unreadable image "{broken}" - images skipped so far: 1' in capfd.readouterr().err


def test_unknown_skip_mode_is_rejected(imagefolder):
    with pytest.raises(ValueError, match="skip_mode='strict'"):
        data.build_dataset(imagefolder, "val", 16, 8, training=False, skip_mode="strict")


def test_shards_partition_the_eval_split(imagefolder):
    shards = [labels_of(data.build_dataset(imagefolder, "val", 16, 4, training=False,
                                           shard=(2, i))) for i in range(2)]
    assert sorted(shards[0] + shards[1]) == VAL_LABELS
    with pytest.raises(ValueError, match=r"shard=\(2, 2\)"):
        data.build_dataset(imagefolder, "val", 16, 4, training=False, shard=(2, 2))


def test_synthetic_dataset_repeats_one_cached_batch():
    ds = data.synthetic_dataset(8, 4, 10)
    assert ds.element_spec[0].shape.as_list() == [4, 8, 8, 3]
    assert ds.element_spec[1].dtype == tf.int32
    (a_images, a_labels), (b_images, b_labels) = list(ds.take(2))
    np.testing.assert_array_equal(a_images, b_images)
    assert a_labels.numpy().min() >= 0 and a_labels.numpy().max() < 10


# ------------------------------------------------------------------ skipped-image count: no false alarm
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_an_epoch_cut_short_counts_no_skip_on_valid_files(tmp_path, batch):
    """Regression (issue 34): 300k valid JPEGs and ``--steps-per-epoch 2`` logged "2 images skipped": the old
    fast count took images still in flight for failures. Valid files, epoch cut after one batch: 0."""
    from dataset.make_synthetic_imagefolder import make_imagefolder

    make_imagefolder(str(tmp_path), num_classes=2, train_per_class=12, val_per_class=1, image_size=24)
    counter = data.SkipCounter()
    for epoch in range(2):
        ds = data.build_dataset(str(tmp_path), "train", 16, batch, training=True, augment="none", seed=epoch,
                                skip_counter=counter)
        next(iter(ds))  # the trainer's step limit: the rest of the pass is never consumed
        assert counter.count == 0, (batch, epoch)


@pytest.mark.parametrize("broken", ["first", "middle", "last"])
def test_a_full_pass_counts_each_real_failure_wherever_it_is(tmp_path, broken):
    """Failures first, in the middle and among the last files of a pass (closed by the sentinel) all count."""
    from dataset.make_synthetic_imagefolder import make_imagefolder

    make_imagefolder(str(tmp_path), num_classes=1, train_per_class=6, val_per_class=2, image_size=24, png_every=0)
    folder = os.path.join(str(tmp_path), "val", sorted(os.listdir(os.path.join(str(tmp_path), "val")))[0])
    name = {"first": "!bad.jpg", "middle": "00000_bad.jpg", "last": "zz_bad.jpg"}[broken]  # around 00000/00001
    with open(os.path.join(folder, name), "wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0" + bytes(300) + b"\xff\xd9")  # passes the structure check, fails decode
    counter = data.SkipCounter()
    batches = list(data.build_dataset(str(tmp_path), "val", 16, 2, training=False, skip_counter=counter))
    assert sum(int(y.shape[0]) for _, y in batches) == 2 and counter.count == 1


def test_training_cut_by_steps_per_epoch_reports_no_skipped_images(tmp_path, caplog):
    """End to end, as reported: valid files, ``--steps-per-epoch 1``, from scratch and from
    ``--pretrained-from-file``: ``train.skipped_images`` 0 and no warning."""
    import logging

    import main as entry
    from common.io.logger import read_dllogger
    from dataset.make_synthetic_imagefolder import make_imagefolder

    make_imagefolder(str(tmp_path / "data"), num_classes=2, train_per_class=9, val_per_class=1, image_size=32)
    base = ["train", "--model", "efficientnet-b0", str(tmp_path / "data"), "--image-size", "32", "--epochs", "1",
            "--steps-per-epoch", "1", "-b", "3", "--no-eval", "--no-tensorboard"]
    for name, extra in (("scratch", []), ("tuned", ["--pretrained-from-file", str(tmp_path / "scratch" / "checkpoint-latest")])):
        with caplog.at_level(logging.WARNING):
            assert entry.main([*base, "--workspace", str(tmp_path / name), *extra]) == 0
        skipped = [r["data"]["train.skipped_images"] for r in read_dllogger(str(tmp_path / name / "raport.json"))
                   if "train.skipped_images" in r.get("data", {})]
        assert skipped and set(skipped) == {0}, (name, skipped)
        assert "failed to decode" not in caplog.text


@pytest.mark.parametrize("training", [True, False])
def test_a_file_turned_into_a_decompression_bomb_after_the_check_is_skipped_undecoded(tmp_path, training):
    """A file that passed the pre-run check and was then rewritten in place as a bomb (a restart does not re-check
    usable files, CheckManifest.check_listing): the pipeline reads its header, skips and counts it, never decodes
    its 529 MP (the run finishes in seconds with bounded memory)."""
    import bad_files
    from PIL import Image

    for name in ("a", "b", "c"):
        os.makedirs(tmp_path / "train" / name)
        Image.new("RGB", (20, 20), (len(name), 50, 90)).save(tmp_path / "train" / name / "x.png")
    os.makedirs(tmp_path / "val")
    for name in ("a", "b", "c"):
        os.symlink(tmp_path / "train" / name, tmp_path / "val" / name)
    (tmp_path / "train" / "b" / "x.png").write_bytes(bad_files.bomb_png())
    counter = data.SkipCounter()
    ds = data.build_dataset(str(tmp_path), "train" if training else "val", 16, 1, training=training, seed=0,
                            drop_remainder=False, skip_counter=counter)
    assert sorted(labels_of(ds)) == [0, 2] and counter.count == 1
