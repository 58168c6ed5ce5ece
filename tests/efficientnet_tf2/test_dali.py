"""Tests for efficientnet_tf2.dali (``--data-backend dali-cpu|dali-gpu``) against the tfdata path.

Everything runs the CPU pipelines (``device_id=None``); ``dali-gpu`` is only
checked to fail fast and cleanly when no GPU is present.
"""
import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

try:
    import nvidia.dali.plugin.tf  # noqa: F401
except ImportError as error:  # the Makefile installs it; a bare `pip install -e .` does not
    pytest.skip(f"nvidia.dali.plugin.tf cannot be imported ({error}); run `make install`",
                allow_module_level=True)

import main as cli
from dataset.make_synthetic_imagefolder import make_imagefolder
from efficientnet_tf2 import dali, data, preprocessing
from efficientnet_tf2.task import ClassificationConfig, ImageClassificationTask

SIZE = 32  # eval resizes the 48 px images' short side to 64 (upscale), crops 32
NUM_TRAIN, NUM_VAL = 18, 15  # 3 classes x 6 / x 5; every 3rd image of a class is a PNG
HAS_GPU = bool(tf.config.list_physical_devices("GPU"))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dali_shapes"))
    make_imagefolder(root, num_classes=3, train_per_class=6, val_per_class=5, image_size=48,
                     seed=2, png_every=3)
    return root


def collect(ds):
    """(images [N, S, S, 3], labels [N], batch sizes) of a finite batched dataset."""
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    return (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]),
            [len(b[1]) for b in batches])


def unnormalize(images):
    """float32 normalized -> float64 in 0..255 units."""
    return images * np.array(preprocessing.STDDEV_RGB) + np.array(preprocessing.MEAN_RGB)


def dali_eval(root, batch, **kwargs):
    return collect(dali.build_dali_dataset(root, "val", SIZE, batch, training=False, **kwargs))


def dali_train(root, batch, augment="none", seed=7, **kwargs):
    return dali.build_dali_dataset(root, "train", SIZE, batch, training=True, augment=augment,
                                   seed=seed, **kwargs)


# ------------------------------------------------------------ train pipeline
def test_train_batches_match_tfdata_structure(shapes):
    ds = dali_train(shapes, 4)
    assert ds.element_spec == data.build_dataset(shapes, "train", SIZE, 4, training=True).element_spec
    images, labels, sizes = collect(ds)
    assert sizes == [4] * (NUM_TRAIN // 4)  # drop_remainder, as tfdata
    assert images.dtype == np.float32 and labels.dtype == np.int32
    # Same mean/std as tfdata: un-normalized pixels are whole uint8 values.
    raw = unnormalize(images)
    assert raw.min() >= -1e-3 and raw.max() <= 255 + 1e-3
    np.testing.assert_allclose(raw, np.round(raw), atol=1e-3)
    assert raw.std() > 10  # real image content, not a constant


def test_train_epoch_is_a_permutation_of_the_files(shapes):
    _, labels, sizes = collect(dali_train(shapes, 6))
    assert sizes == [6, 6, 6]
    assert collections.Counter(labels.tolist()) == {0: 6, 1: 6, 2: 6}


def test_autoaugment_runs_and_changes_images(shapes):
    plain, plain_labels, _ = collect(dali_train(shapes, 6, "none", seed=11))
    augmented, labels, _ = collect(dali_train(shapes, 6, "autoaugment", seed=11))
    assert labels.tolist() == plain_labels.tolist()  # same seed: same file order
    raw = unnormalize(augmented)
    assert raw.min() >= -1e-3 and raw.max() <= 255 + 1e-3
    # Crops and flips share the seed (mirror draws come before AutoAugment's);
    # most images then differ by AutoAugment alone (some sub-policies skip both ops).
    changed = np.abs(augmented - plain).mean(axis=(1, 2, 3)) > 0.02
    assert changed.sum() >= NUM_TRAIN // 2, changed


def test_unknown_augmentation_is_rejected(shapes):
    with pytest.raises(ValueError, match="augment='autoaugment-v0'.*ImageNet AutoAugment policy only"):
        dali_train(shapes, 4, augment="autoaugment-v0")


# ------------------------------------------------------------- eval pipeline
def test_eval_matches_tfdata_eval(shapes):
    images, labels, sizes = dali_eval(shapes, 4)
    ref_images, ref_labels, ref_sizes = collect(
        data.build_dataset(shapes, "val", SIZE, 4, training=False))
    assert labels.tolist() == ref_labels.tolist() == data.list_image_folder(shapes, "val")[1]
    assert sizes == ref_sizes == [4, 4, 4, 3]  # every image once, last batch partial
    # Both resize the same way (PNGs agree to float rounding); JPEGs differ by the
    # decoders' IDCT / chroma upsampling, about one grey level (1/58 in normalized units).
    paths = data.list_image_folder(shapes, "val")[0]
    is_png = np.array([p.endswith(".png") for p in paths])
    diff = np.abs(images - ref_images).mean(axis=(1, 2, 3))
    assert is_png.sum() == 3 and diff[is_png].max() < 1e-4
    assert diff[~is_png].max() < 0.03


def test_eval_crop_is_exact_where_resize_is_identity(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b"):
            os.makedirs(tmp_path / split / name)
            noise = rng.integers(0, 256, (SIZE + 32, SIZE + 32, 3), dtype=np.uint8)
            Image.fromarray(noise).save(tmp_path / split / name / "x.png")
    images, labels, _ = dali_eval(str(tmp_path), 2)
    ref_images, _, _ = collect(data.build_dataset(str(tmp_path), "val", SIZE, 2, training=False))
    assert labels.tolist() == [0, 1]
    np.testing.assert_allclose(images, ref_images, atol=1e-5)


def test_two_shards_split_the_files_without_overlap(shapes):
    assert dali.shard_range(NUM_VAL, (2, 0)) == (0, 7) and dali.shard_range(NUM_VAL, (2, 1)) == (7, 15)
    whole, whole_labels, _ = dali_eval(shapes, 4)
    first, first_labels, first_sizes = dali_eval(shapes, 4, shard=(2, 0))
    second, second_labels, second_sizes = dali_eval(shapes, 4, shard=(2, 1))
    assert first_sizes == [4, 3] and second_sizes == [4, 4]  # padding dropped per shard
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    assert first_labels.tolist() + second_labels.tolist() == whole_labels.tolist()
    # Training: both workers permute with the same seed, then take disjoint ranges.
    _, train_a, _ = collect(dali_train(shapes, 3, shard=(2, 0)))
    _, train_b, _ = collect(dali_train(shapes, 3, shard=(2, 1)))
    assert collections.Counter(train_a.tolist() + train_b.tolist()) == {0: 6, 1: 6, 2: 6}


def test_task_eval_dataset_counts_every_image_once(shapes):
    task = ImageClassificationTask(ClassificationConfig(data_dir=shapes, data_backend="dali-cpu",
                                                        num_classes=3, image_size=SIZE))
    _, labels, sizes = collect(task.build_eval_dataset(4))
    assert sum(sizes) == NUM_VAL and labels.tolist() == data.list_image_folder(shapes, "val")[1]


# ------------------------------------------------------------------- CLI / GPU
def test_main_train_with_dali_cpu(shapes, tmp_path):
    """Train + eval through the shared trainer (AutoAugment is covered above; its build costs seconds)."""
    workspace = str(tmp_path / "ws")
    argv = ["train", "--model", "efficientnet-b0", shapes, "--workspace", workspace,
            "--image-size", str(SIZE), "--epochs", "1", "-b", "4", "--steps-per-epoch", "2",
            "--data-backend", "dali-cpu", "--augmentation", "none", "--no-checkpoints",
            "--log-every", "100"]
    assert cli.main(argv) == 0
    with open(os.path.join(workspace, "raport.json")) as f:
        summary = [json.loads(line[5:]) for line in f if line.startswith("DLLL ")][-1]["data"]
    assert np.isfinite(summary["train.loss"])
    # 15 validation images: top-1 is a whole number of fifteenths.
    hits = summary["val.top1"] * NUM_VAL / 100
    assert abs(hits - round(hits)) < 1e-3


@pytest.mark.skipif(HAS_GPU, reason="checks the failure without a GPU")
def test_dali_gpu_without_gpu_fails_fast_with_a_clear_message(shapes, tmp_path, capsys):
    with pytest.raises(dali.DaliDeviceError, match="dali-gpu needs an NVIDIA GPU"):
        dali.build_dali_dataset(shapes, "val", SIZE, 4, training=False, device="gpu")
    argv = ["train", "--model", "efficientnet-b0", shapes, "--workspace", str(tmp_path),
            "--data-backend", "dali-gpu", "--epochs", "1"]
    assert cli.main(argv) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: --data-backend dali-gpu needs an NVIDIA GPU")
    assert "dali-cpu" in message and "\n" not in message


def test_padded_epoch_cuts_the_padding_eagerly(shapes):
    """The eval iterable of dali-gpu, exercised on a CPU stream."""
    folder = data.ImageFolder.from_dir(shapes, "val")
    stream = dali.build_dali_stream(folder, SIZE, 4, training=False)
    images, labels, sizes = collect(dali.PaddedEpoch(stream, NUM_VAL, 4))
    ref_images, ref_labels, _ = dali_eval(shapes, 4)
    assert sizes == [4, 4, 4, 3] and labels.tolist() == ref_labels.tolist()
    np.testing.assert_array_equal(images, ref_images)
