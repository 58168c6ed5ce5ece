"""ImageFolder input pipeline for EfficientNet.

Layout: ``<root>/train/<class>/<image>`` and ``<root>/val/<class>/<image>``
(``.jpg``/``.jpeg``/``.png``, case-insensitive, searched recursively). Class
indices follow the sorted folder names of the *train* split, for every split.

Shape glossary: B batch size, S image size. `build_dataset` yields
``(images [B, S, S, 3] float32 normalized, labels [B] int32)``.

The task checks every file once before training (`common.io.data_check`: named in
one summary, then left out through ``exclude``). Files that pass that check but
still fail to decode (damage inside the data) are skipped, never
fatal, and counted by a `SkipCounter` (int64 ``tf.Variable``s updated in
graph). Pass your own ``skip_counter`` to `build_dataset` to read
``counter.count`` (e.g. at the end of each epoch); create it outside any
``strategy.scope()``. Two ``skip_mode``s:

* ``"fast"`` (default): ``map(count attempt -> decode)``, then
  ``ignore_errors(log_warning=True)`` (logs the TF error, not the path), then
  ``map(count success)``. No per-image overhead; ``count = attempted -
  decoded`` is exact once a pass over the data has finished (mid-pass it
  also includes images still being decoded).
* ``"exact"``: each file is decoded inside a one-element nested dataset::

      from_tensors(path).map(decode).ignore_errors(log_warning=True)
          .concatenate(from_tensors(<placeholder image, valid=False>))
          .take(1).get_single_element()

  so every file yields one element with a ``valid`` flag; a ``filter`` drops
  invalid ones, counting each and logging its path with the running count.
  Always exact, at ~0.5 ms of CPU per image.

With ``cache_decoded`` images are decoded (and skips counted) in the first
epoch only, and shuffled after the cache so every epoch is reshuffled.

Augmentation randomness is stateless and per-element: each file is zipped
with a seed from ``tf.data.Dataset.random(seed)``, so with a fixed ``seed``
a training epoch is reproducible (the pipeline is then also made
deterministic); a new epoch re-randomizes.
"""
import dataclasses
import os
import sys

import tensorflow as tf

from common.command.errors import DataError
from common.io.images import IMAGE_EXTENSIONS, list_images
from efficientnet_tf2 import preprocessing

TRAIN_SPLIT = "train"
SKIP_MODES = ("fast", "exact")
AUTOTUNE = tf.data.AUTOTUNE


# ------------------------------------------------------------------ listing
def list_class_folders(split_dir):
    """Sorted names of the non-hidden sub-directories of `split_dir`."""
    names = [n for n in os.listdir(split_dir)
             if not n.startswith(".") and os.path.isdir(os.path.join(split_dir, n))]
    return sorted(names)


def _list_images(class_dir):
    """Sorted image paths under `class_dir` (recursive, by extension)."""
    return list_images([class_dir], allow_empty=True) if os.path.isdir(class_dir) else []


def _train_class_names(root, split_dir):
    """Class names from `<root>/train`; raises if missing or empty."""
    train_dir = os.path.join(root, TRAIN_SPLIT)
    if not os.path.isdir(train_dir):
        raise FileNotFoundError(
            f"Train split directory not found: {train_dir}. Class indices come from "
            f"its folder names; pass class_names explicitly to read {split_dir} alone.")
    names = list_class_folders(train_dir)
    if not names:
        raise ValueError(f"No class folders in {train_dir} (expected {train_dir}/<class>/<image>).")
    return names, train_dir


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """Listing of one split: parallel `paths` / `labels`, and `class_names`.

    `class_source` names where the class names came from (for messages).
    """

    split_dir: str
    paths: tuple
    labels: tuple
    class_names: tuple
    class_source: str

    @classmethod
    def from_dir(cls, root, split, class_names=None, exclude=()):
        """Lists `<root>/<split>`; class names default to `<root>/train` folders.

        `exclude`: paths left out (the unusable files found by `common.io.data_check`).
        """
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            raise FileNotFoundError(
                f"Dataset split directory not found: {split_dir} "
                f"(expected {split_dir}/<class>/<image>).")
        source = "the given class_names"
        if class_names is None:
            class_names, source = _train_class_names(root, split_dir)
        paths, labels = _list_split(split_dir, list(class_names), source)
        if exclude:
            exclude = set(exclude)
            kept = [(p, y) for p, y in zip(paths, labels) if p not in exclude]
            if not kept:
                raise DataError(f"no usable images left in {split_dir} ({len(paths)} listed, all unusable)")
            paths, labels = (list(x) for x in zip(*kept))
        return cls(split_dir, tuple(paths), tuple(labels), tuple(class_names), source)

    def __len__(self):
        return len(self.paths)

    @property
    def num_classes(self):
        return len(self.class_names)


def _list_split(split_dir, class_names, source):
    """(paths, labels) of `split_dir`; errors on unknown classes or no images."""
    unknown = sorted(set(list_class_folders(split_dir)) - set(class_names))
    if unknown:
        raise ValueError(f"{split_dir} has class folders not present in {source}: "
                         f"{unknown}. Every class must have a folder in the train split.")
    paths, labels = [], []
    for index, name in enumerate(class_names):
        found = _list_images(os.path.join(split_dir, name))
        paths += found
        labels += [index] * len(found)
    if not paths:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {split_dir}.")
    return paths, labels


def list_image_folder(root, split, class_names=None):
    """Returns (paths list[str], labels list[int], class_names list[str])."""
    folder = ImageFolder.from_dir(root, split, class_names)
    return list(folder.paths), list(folder.labels), list(folder.class_names)


def check_num_classes(class_names, num_classes, source="the dataset"):
    """Raises ValueError unless len(class_names) == num_classes."""
    if num_classes == len(class_names):
        return
    preview = ", ".join(class_names[:5]) + (", ..." if len(class_names) > 5 else "")
    raise ValueError(
        f"--num-classes {num_classes} but {source} has {len(class_names)} class folders "
        f"({preview}): pass --num-classes {len(class_names)}")


# ------------------------------------------------------------ skip counting
_PASS_SHIFT = 40  # file numbers: pass << 40 | index in the pass


class SkipCounter:
    """Counts unreadable images dropped by `build_dataset` (int64 tf.Variables).

    "exact" mode counts each failed file by its guard. "fast" mode numbers the files of a pass in order and
    counts the gaps in the numbers that come out of ``ignore_errors``: only files that really failed, never the
    ones still being decoded when an epoch is cut short (``--steps-per-epoch``, ``--prof``), which the former
    attempted - decoded count took for failures. A failure among the very last files of a pass, with no later
    file decoded, shows in TensorFlow's own warning only.
    """

    def __init__(self):
        with tf.init_scope(), tf.device("/cpu:0"):
            self._failed = tf.Variable(0, dtype=tf.int64, trainable=False, name="failed")
            self._gaps = tf.Variable(0, dtype=tf.int64, trainable=False, name="gaps")
            self._last = tf.Variable(-1, dtype=tf.int64, trainable=False, name="last_index")

    @property
    def count(self):
        """Images skipped so far (Python int)."""
        return int(self._failed.numpy()) + int(self._gaps.numpy())

    def reset(self):
        """Sets the counts back to 0."""
        self._failed.assign(0)
        self._gaps.assign(0)

    def record(self, valid, path):
        """Graph-side ("exact"): counts and logs `path` if not `valid`; returns `valid`."""
        def skip():
            count = self._failed.assign_add(1)
            tf.print("WARNING: skipped unreadable image", path,
                     "- images skipped so far:", count, output_stream=sys.stderr)
            return tf.constant(False)
        return tf.cond(valid, lambda: tf.constant(True), skip)

    def new_pass(self) -> int:
        """The first number of a new pass's files (fast mode): its pass number in the high bits, so a previous
        epoch's iterator still draining in the background is told apart and ignored."""
        self._passes = getattr(self, "_passes", -1) + 1
        return self._passes << _PASS_SHIFT

    def record_decoded(self, index):
        """Graph-side ("fast"): file ``index`` decoded; the numbers skipped since the last decoded one of its
        pass failed (a newer pass: those before it). Returns the op."""
        index = tf.cast(index, tf.int64)
        last = self._last.read_value()
        shift = tf.constant(_PASS_SHIFT, tf.int64)
        this_pass, last_pass = tf.bitwise.right_shift(index, shift), tf.bitwise.right_shift(last, shift)
        first = tf.bitwise.left_shift(this_pass, shift)  # the number of the pass's first file
        gap = tf.where(this_pass == last_pass, index - last - 1,
                       tf.where(this_pass > last_pass, index - first, tf.constant(0, tf.int64)))
        with tf.control_dependencies([self._gaps.assign_add(gap)]):
            return self._last.assign(tf.where(this_pass >= last_pass, index, last))

    def __repr__(self):
        return f"SkipCounter(count={self.count})"


def _guarded(load_fn, fallback, path, *args):
    """Runs load_fn(path, *args) -> (image, True), or (fallback, False) on error."""
    good = tf.data.Dataset.from_tensors((path,) + args).map(
        lambda *x: (load_fn(*x), tf.constant(True))).ignore_errors(log_warning=True)
    bad = tf.data.Dataset.from_tensors((fallback, tf.constant(False)))
    return good.concatenate(bad).take(1).get_single_element()


def _load_exact(ds, load_fn, fallback, counter, deterministic):
    """"exact" mode: a per-file guard flags failures, counted and logged by path."""
    def load(path, label, *extra):
        image, valid = _guarded(load_fn, fallback, path, *extra)
        return (image, label, valid, path) + extra

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = ds.filter(lambda image, label, valid, path, *extra: counter.record(valid, path))
    return ds.map(lambda image, label, valid, path, *extra: (image, label) + extra)


def _load_fast(ds, load_fn, counter, deterministic):
    """"fast" mode: files numbered in order, top-level ignore_errors, the gaps in the numbers counted
    (:class:`SkipCounter`). A sentinel numbered after the last file (never read, dropped after counting) closes
    the pass, so failures among its last files count too; an epoch cut short never reaches it. Decoding keeps the
    file order (needed for the numbers) whatever ``deterministic`` says."""
    del deterministic
    start = counter.new_pass()
    files = tf.get_static_value(ds.cardinality())  # None or < 0: unknown, no sentinel

    def load(index, element):
        path, label, *extra = element
        return (index, load_fn(path, *extra), label, *extra)

    def decoded(index, image, label, *extra):
        with tf.control_dependencies([counter.record_decoded(index)]):
            return (tf.identity(index), image, label, *extra)

    loaded = ds.enumerate(start=start).map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    loaded = loaded.ignore_errors(log_warning=True)
    if files is not None and files >= 0:
        end = start + int(files)
        spec = loaded.element_spec
        filler = tuple(tf.zeros([1 if d is None else d for d in s.shape], s.dtype) for s in spec[1:])
        loaded = loaded.concatenate(tf.data.Dataset.from_tensors((tf.constant(end, tf.int64), *filler)))
        return loaded.map(decoded).filter(lambda index, *rest: index < end).map(lambda index, *rest: rest)
    return loaded.map(decoded).map(lambda index, *rest: rest)


@dataclasses.dataclass(frozen=True)
class _Loader:
    """How files are decoded: skip counting, skip mode and output ordering."""

    counter: SkipCounter
    skip_mode: str
    deterministic: bool

    def __call__(self, ds, load_fn, fallback):
        """(path, label, *extra) -> (image, label, *extra) for readable files only.

        `load_fn(path, *extra)` returns the image; `extra` (e.g. a seed)
        passes through; `fallback` is the placeholder image of "exact" mode.
        """
        if self.skip_mode == "exact":
            return _load_exact(ds, load_fn, fallback, self.counter, self.deterministic)
        return _load_fast(ds, load_fn, self.counter, self.deterministic)


# ------------------------------------------------------------------ decoding
def read_within_budget(path):
    """Scalar string path -> its bytes; a file whose header declares more pixels than the pixel budget
    (``--max-image-pixels``, read when the pipeline is built) fails here, before any decode, and is skipped and
    counted like a file that does not decode. The pre-run check refuses such files already; this holds for a file
    rewritten in place after it (a restart re-checks only new and unusable files, ``CheckManifest.check_listing``)."""
    from common.io import pixel_budget

    data = tf.io.read_file(path)
    budget = tf.constant(pixel_budget.max_pixels(), tf.int64)
    check = tf.debugging.assert_less_equal(pixel_budget.declared_pixels(data), budget,
                                           message="image declares more pixels than --max-image-pixels")
    with tf.control_dependencies([check]):
        return tf.identity(data)


def decode_image_file(path):
    """Reads and decodes an image file: scalar string path -> [H, W, 3] uint8."""
    return preprocessing.decode_image(read_within_budget(path))


def _split_seed(seed, index):
    """[2] int seed -> the `index`-th of two independent [2] seeds."""
    return tf.random.experimental.stateless_split(seed, 2)[index]


def _decode_random_crop(image_size):
    """(path, seed [2]) -> [S, S, 3] uint8 random-resized crop."""
    def load(path, seed):
        return preprocessing.decode_and_random_crop(
            read_within_budget(path), image_size, seed=_split_seed(seed, 0))
    return load


def _decode_eval_crop(image_size):
    """path -> [S, S, 3] uint8 resized + centre-cropped."""
    def load(path):
        return preprocessing.eval_resize_crop(decode_image_file(path), image_size)
    return load


def _with_seeds(ds, seed):
    """Appends a fresh per-element [2] int64 seed to each element."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((ds, seeds)).map(lambda x, s: (*x, s))


# ------------------------------------------------------------------ datasets
def _file_dataset(folder, shard):
    """(path string, label int32) elements of `folder`, optionally sharded."""
    ds = tf.data.Dataset.from_tensor_slices(
        (list(folder.paths), tf.constant(folder.labels, tf.int32)))
    if shard is None:
        return ds
    num_shards, index = shard
    if not 0 <= index < num_shards:
        raise ValueError(f"Received: shard={shard}; expected (num_shards, index) "
                         "with 0 <= index < num_shards.")
    return ds.shard(num_shards, index)


def _train_from_files(ds, image_size, augment, seed, loader, size):
    """Shuffled (path, label) -> ([S, S, 3] float32, label); JPEGs decode the crop only."""
    ds = _with_seeds(ds.shuffle(size, seed=seed, reshuffle_each_iteration=True), seed)
    empty = tf.zeros([image_size, image_size, 3], tf.uint8)
    ds = loader(ds, _decode_random_crop(image_size), empty)

    def finish(crop, label, element_seed):
        return preprocessing.augment_crop(crop, augment, _split_seed(element_seed, 1)), label

    return ds.map(finish, num_parallel_calls=AUTOTUNE, deterministic=loader.deterministic)


def _train_from_cache(ds, image_size, augment, seed, loader, size):
    """(path, label) -> decoded, cached, then shuffled and augmented each epoch."""
    ds = loader(ds, decode_image_file, tf.zeros([1, 1, 3], tf.uint8)).cache()
    ds = _with_seeds(ds.shuffle(size, seed=seed, reshuffle_each_iteration=True), seed)

    def finish(image, label, element_seed):
        return preprocessing.preprocess_for_train(image, image_size, augment, element_seed), label

    return ds.map(finish, num_parallel_calls=AUTOTUNE, deterministic=loader.deterministic)


def _eval_images(ds, image_size, loader, cache_decoded):
    """(path, label) -> ([S, S, 3] float32, label), resize + centre crop."""
    empty = tf.zeros([image_size, image_size, 3], tf.uint8)
    ds = loader(ds, _decode_eval_crop(image_size), empty)
    if cache_decoded:
        ds = ds.cache()
    return ds.map(lambda image, label: (preprocessing.normalize(image), label),
                  num_parallel_calls=AUTOTUNE, deterministic=True)


def build_dataset(data_dir, split, image_size, batch_size, training, augment="autoaugment",
                  num_classes=None, seed=None, shard=None, drop_remainder=None,
                  cache_decoded=False, skip_counter=None, class_names=None,
                  skip_mode="fast", exclude=()):
    """ImageFolder split -> batched (images [B, S, S, 3] float32, labels [B] int32).

    Args:
      data_dir: root holding `train/` and `val/` class folders.
      split: split folder name, e.g. "train" or "val".
      image_size: int S.
      batch_size: int B (per replica / per shard).
      training: shuffle + random-resized crop + flip + `augment`; else
        short side -> S + 32 and centre crop, in deterministic order.
      augment: one of `preprocessing.AUGMENTATIONS`.
      num_classes: if given, must equal the number of class folders.
      seed: int seed for shuffling and augmentation (None: random).
      shard: optional (num_shards, index), applied to the file list.
      drop_remainder: default True for training, False otherwise.
      cache_decoded: keep decoded images in memory after the first epoch
        (training: full images, re-cropped each epoch; eval: final crops).
      skip_counter: `SkipCounter` that counts unreadable files (one is
        created if None; skips are logged either way).
      class_names: overrides the class list read from `<data_dir>/train`.
      skip_mode: how unreadable files are skipped and counted, one of
        SKIP_MODES: "fast" (default, no per-image overhead; count exact after
        each full pass) or "exact" (per-file guard, ~0.5 ms CPU per image;
        count always exact and each skipped path is logged).
    """
    if augment not in preprocessing.AUGMENTATIONS:
        raise ValueError(f"Received: augment={augment!r}; expected one of "
                         f"{preprocessing.AUGMENTATIONS}.")
    if skip_mode not in SKIP_MODES:
        raise ValueError(f"Received: skip_mode={skip_mode!r}; expected one of {SKIP_MODES}.")
    folder = ImageFolder.from_dir(data_dir, split, class_names, exclude)
    if num_classes is not None:
        check_num_classes(list(folder.class_names), num_classes, folder.class_source)
    deterministic = not training or seed is not None
    loader = _Loader(skip_counter or SkipCounter(), skip_mode, deterministic)
    ds = _file_dataset(folder, shard)
    if training:
        train_fn = _train_from_cache if cache_decoded else _train_from_files
        ds = train_fn(ds, image_size, augment, seed, loader, len(folder))
    else:
        ds = _eval_images(ds, image_size, loader, cache_decoded)
    drop = training if drop_remainder is None else drop_remainder
    ds = ds.batch(batch_size, drop_remainder=drop, num_parallel_calls=AUTOTUNE,
                  deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.prefetch(AUTOTUNE).with_options(options)


def synthetic_dataset(image_size, batch_size, num_classes, seed=0):
    """Endless copies of one random batch, generated once (for benchmarks).

    Returns:
      Dataset of (images [B, S, S, 3] float32 ~ N(0, 1), labels [B] int32).
    """
    image_seed, label_seed = (seed, 0), (seed, 1)
    images = tf.random.stateless_normal([batch_size, image_size, image_size, 3], image_seed)
    labels = tf.random.stateless_uniform([batch_size], label_seed, maxval=num_classes,
                                         dtype=tf.int32)
    return tf.data.Dataset.from_tensors((images, labels)).cache().repeat()
