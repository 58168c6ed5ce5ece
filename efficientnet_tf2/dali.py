"""NVIDIA DALI ImageFolder pipelines for EfficientNet (``--data-backend dali-cpu|dali-gpu``).

Shape glossary: B batch size, S image size. `build_dali_dataset` yields the
same elements as `data.build_dataset`: ``(images [B, S, S, 3] float32 NHWC,
normalized with preprocessing.MEAN_RGB / STDDEV_RGB, labels [B] int32)``,
through ``nvidia.dali.plugin.tf.DALIDataset``, so the task and trainer do
not know which backend ran.

The file list, the labels and the class order come from `data.ImageFolder`
(sorted train folders, recursive, same extensions) and are handed to
``fn.readers.file(files=..., labels=...)``: class indices are those of the
tfdata path.

Train: the file list is permuted with ``seed`` (one global shuffle, identical
on every worker), split into contiguous shards (DALI's sharding), the
random-resized-crop window alone is decoded (torchvision scale/ratio, 10
attempts), resized to S x S (antialiased linear), optionally AutoAugmented
(DALI's ImageNet policy with the parameters of `autoaugment.py`: translation
up to 150/331 of the side, nearest-neighbour warps, grey 128 fill), then
flipped and normalized in one ``crop_mirror_normalize``. The flip comes after
AutoAugment here (before it in tfdata); the distribution is the same since
every geometric op of the policy has a random sign. One epoch is
``max(shard_size // B, 1)`` full batches (tfdata: drop_remainder).

Eval: decode, short side -> S + 32 (aspect kept), centre crop S x S,
normalize, files in order. Every image of the shard is seen exactly once:
the reader pads the shard's last batch with copies of its last file
(``pad_last_batch``); we take ``ceil(shard_size / B)`` batches and slice the
copies off the last one, so it is partial as in tfdata (batch dim None).

``device="cpu"`` runs every operator on the CPU with ``device_id=None`` (no
GPU needed). ``device="gpu"`` decodes with nvJPEG (``"mixed"``) and runs the
rest on GPU 0, outputs on ``/gpu:0``; since a GPU-placed DALIDataset takes no
further tf.data transformations, the epoch cut is left to the trainer's step
cap (training) and to the Python iterable `PaddedEpoch` (eval), which limits
dali-gpu to a single replica. Without a GPU `check_device` raises
`DaliDeviceError` before anything is built. (dali-gpu is untested here: the
development machine has no GPU.)

Unlike tfdata, unreadable files are not skipped: the DALI pipeline stops
with an error.
"""
import math
import os
import warnings

import numpy as np
import tensorflow as tf
from nvidia.dali import backend as dali_backend
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.auto_aug import auto_augment
from nvidia.dali.plugin import tf as dali_tf

from efficientnet_tf2 import data as data_lib
from efficientnet_tf2 import preprocessing

DEVICES = ("cpu", "gpu")
AUGMENTATIONS = ("autoaugment", "none")
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10
AA_MAX_TRANSLATE = 150 / 331  # ImageNet policy as in autoaugment.py / torchvision
_READER = "Reader"


class DaliDeviceError(RuntimeError):
    """The requested DALI device cannot run on this machine."""


def _cuda_device_count():
    """GPUs DALI can see (0 without a driver)."""
    try:
        return dali_backend.GetCUDADeviceCount()
    except RuntimeError:
        return 0


def check_device(device):
    """Raises `DaliDeviceError` at once unless `device` ("cpu" | "gpu") can run here."""
    if device not in DEVICES:
        raise ValueError(f"Received: device={device!r}; expected one of {DEVICES}.")
    if device == "cpu":
        return
    if _cuda_device_count() == 0:
        raise DaliDeviceError(
            "--data-backend dali-gpu needs an NVIDIA GPU with a CUDA driver, and DALI sees none "
            "on this machine; use --data-backend dali-cpu (same pipeline on the CPU).")
    if not tf.config.list_physical_devices("GPU"):
        raise DaliDeviceError(
            "--data-backend dali-gpu puts its batches on a GPU, but TensorFlow sees none "
            "(CPU-only TensorFlow?); install tensorflow[and-cuda] (pip install -e '.[gpu]') "
            "or use --data-backend dali-cpu.")


def shard_range(num_files, shard=None):
    """[start, end) file indices of `shard` (num_shards, index) as DALI's reader splits.

    DALI gives shard i the contiguous range [n * i // k, n * (i + 1) // k).
    """
    num_shards, index = shard or (1, 0)
    if not 0 <= index < num_shards:
        raise ValueError(f"Received: shard={shard}; expected (num_shards, index) "
                         "with 0 <= index < num_shards.")
    return num_files * index // num_shards, num_files * (index + 1) // num_shards


# ------------------------------------------------------------ graph pieces
def _read(files, labels, shard, pad_last_batch):
    """Encoded bytes and [] int32 label of each file of this shard, in list order."""
    num_shards, index = shard
    encoded, label = fn.readers.file(
        files=files, labels=labels, shard_id=index, num_shards=num_shards,
        random_shuffle=False, stick_to_shard=True, pad_last_batch=pad_last_batch, name=_READER)
    return encoded, fn.reshape(label, shape=[])


def _decoder_device(device):
    return "mixed" if device == "gpu" else "cpu"


def _normalize(images, **kwargs):
    """uint8 HWC -> float32 HWC (x - mean) / std; kwargs: crop / mirror."""
    return fn.crop_mirror_normalize(
        images, dtype=types.FLOAT, output_layout="HWC",
        mean=list(preprocessing.MEAN_RGB), std=list(preprocessing.STDDEV_RGB), **kwargs)


def _auto_augment(images, image_size):
    """DALI's ImageNet AutoAugment policy on [S, S, 3] uint8 images."""
    with warnings.catch_warnings(record=True) as caught:
        images = auto_augment.auto_augment_image_net(
            images, shape=[image_size, image_size], max_translate_rel=AA_MAX_TRANSLATE,
            fill_value=128, interp_type=types.INTERP_NN)
    for warning in caught:  # DALI's own policy calls its deprecated `experimental.equalize`
        if not (warning.category is DeprecationWarning and "equalize" in str(warning.message)):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return images


def _outputs(images, label, device):
    """Moves the label next to the images (GPU pipelines output GPU tensors only)."""
    return images, (label.gpu() if device == "gpu" else label)


@pipeline_def(enable_conditionals=True)
def train_pipeline(files, labels, shard, image_size, augment, device):
    """Random-resized crop, optional AutoAugment, flip, normalize."""
    encoded, label = _read(files, labels, shard, pad_last_batch=False)
    mirror = fn.random.coin_flip(probability=0.5)  # drawn before AutoAugment's random ops
    images = fn.decoders.image_random_crop(
        encoded, device=_decoder_device(device), output_type=types.RGB,
        random_area=list(CROP_SCALE), random_aspect_ratio=list(CROP_RATIO),
        num_attempts=CROP_ATTEMPTS)
    images = fn.resize(images, resize_x=image_size, resize_y=image_size, antialias=True)
    if augment == "autoaugment":
        images = _auto_augment(images, image_size)
    images = _normalize(images, mirror=mirror)
    return _outputs(images, label, device)


@pipeline_def
def eval_pipeline(files, labels, shard, image_size, device):
    """Short side -> S + 32, centre crop S x S, normalize."""
    encoded, label = _read(files, labels, shard, pad_last_batch=True)
    images = fn.decoders.image(encoded, device=_decoder_device(device), output_type=types.RGB)
    images = fn.resize(images, resize_shorter=image_size + preprocessing.EVAL_RESIZE_MARGIN,
                       antialias=True)
    images = _normalize(images, crop=(image_size, image_size), crop_pos_x=0.5, crop_pos_y=0.5)
    return _outputs(images, label, device)


# ------------------------------------------------------------ tf.data glue
def _pipeline_seed(seed, shard):
    """DALI seed of one shard: distinct per shard, None (random) if seed is None."""
    if seed is None:
        return None
    return (int(seed) * 7919 + shard[1]) % (2**31 - 1)


def _to_tf(pipe, batch_size, image_size, device):
    """DALIDataset of (images [B, S, S, 3] float32, labels [B] int32)."""
    shapes = ((batch_size, image_size, image_size, 3), (batch_size,))
    return dali_tf.DALIDataset(
        pipeline=pipe, batch_size=batch_size, output_shapes=shapes,
        output_dtypes=(tf.float32, tf.int32), device_id=0 if device == "gpu" else None)


def _drop_padding(ds, count, batch_size):
    """First `count` examples of an endless padded CPU DALIDataset, in batches of <= B."""
    def trim(index, batch):
        valid = tf.minimum(tf.cast(batch_size, tf.int64), count - index * batch_size)
        return tuple(t[:valid] for t in batch)

    return ds.take(math.ceil(count / batch_size)).enumerate().map(trim)


class PaddedEpoch:
    """One pass over the first `count` examples of an endless padded DALIDataset.

    A Python iterable of (images, labels) batches of <= B, the last one cut
    eagerly. Used for GPU-placed DALIDatasets, which take no further tf.data
    transformations (DALI's TF plugin documentation); single replica only.
    """

    def __init__(self, dataset, count, batch_size):
        self.dataset, self.count, self.batch_size = dataset, count, batch_size

    def __iter__(self):
        iterator = iter(self.dataset)
        for start in range(0, self.count, self.batch_size):
            images, labels = next(iterator)
            valid = min(self.batch_size, self.count - start)
            yield images[:valid], labels[:valid]


def _train_files(folder, seed):
    """(files, labels) lists in a seeded global permutation."""
    order = np.random.default_rng(seed).permutation(len(folder))
    return [folder.paths[i] for i in order], [folder.labels[i] for i in order]


def _default_threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def build_dali_stream(folder, image_size, batch_size, training, augment="none", device="cpu",
                      seed=None, shard=(1, 0), num_threads=None):
    """Endless DALIDataset over one shard of `folder` (the reader loops).

    Training batches run on across epochs; eval batches end each pass over the
    shard with padding copies of its last file. `build_dali_dataset` cuts one
    epoch out of it; benchmarks read it directly for steady-state rates.

    Args:
      folder: `data.ImageFolder` of the split.
      shard: (num_shards, index).
      Others: as `build_dali_dataset`.

    Returns:
      Dataset of (images [B, S, S, 3] float32, labels [B] int32).
    """
    common = dict(batch_size=batch_size, num_threads=num_threads or _default_threads(),
                  device_id=0 if device == "gpu" else None, seed=_pipeline_seed(seed, shard),
                  shard=shard, image_size=image_size, device=device)
    if training:
        files, labels = _train_files(folder, seed)
        pipe = train_pipeline(files=files, labels=labels, augment=augment, **common)
    else:
        pipe = eval_pipeline(files=list(folder.paths), labels=list(folder.labels), **common)
    with tf.device("/gpu:0" if device == "gpu" else "/cpu:0"):
        return _to_tf(pipe, batch_size, image_size, device)


def build_dali_dataset(data_dir, split, image_size, batch_size, training, augment="autoaugment",
                       device="cpu", num_classes=None, seed=None, shard=None, class_names=None,
                       num_threads=None, exclude=()):
    """ImageFolder split -> DALI-fed (images [B, S, S, 3] float32, labels [B] int32).

    Args:
      data_dir, split, image_size, batch_size, num_classes, class_names:
        as `data.build_dataset` (batch_size per replica / per shard).
      training: shuffled random-resized crops + flip + `augment`, one epoch
        of max(shard_size // B, 1) full batches; else the eval transform, every
        image of the shard once, last batch partial.
      augment: one of AUGMENTATIONS (DALI has the ImageNet policy only).
      device: "cpu" (dali-cpu) or "gpu" (dali-gpu, needs a CUDA GPU).
      seed: int seed of the file permutation and of DALI's RNG. Training
        reshuffles only through a new seed (the task passes seed + epoch);
        workers must share it so that their shards do not overlap (None:
        random, single worker only).
      shard: optional (num_shards, index); DALI splits the (shuffled) list
        into contiguous ranges, see `shard_range`.
      num_threads: DALI CPU worker threads (default: usable cores).
      exclude: paths to leave out (unusable files, see `common.io.data_check`).

    Returns:
      device "cpu": a tf.data.Dataset of exactly one epoch. device "gpu": the
      GPU-placed DALIDataset (training: endless, the trainer's steps per epoch
      end the epoch) or a `PaddedEpoch` (eval); see its docstring.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"Received: augment={augment!r}; expected one of {AUGMENTATIONS} "
                         "(the DALI backend has the ImageNet AutoAugment policy only).")
    check_device(device)
    folder = data_lib.ImageFolder.from_dir(data_dir, split, class_names, exclude)
    if num_classes is not None:
        data_lib.check_num_classes(list(folder.class_names), num_classes, folder.class_source)
    shard = shard or (1, 0)
    start, end = shard_range(len(folder), shard)
    ds = build_dali_stream(folder, image_size, batch_size, training, augment, device, seed, shard,
                           num_threads)
    if device == "gpu":  # no tf.data ops after a GPU DALIDataset; the trainer's step cap ends an epoch
        return ds if training else PaddedEpoch(ds, end - start, batch_size)
    with tf.device("/cpu:0"):
        if training:
            return ds.take(max((end - start) // batch_size, 1))
        return _drop_padding(ds, end - start, batch_size)
