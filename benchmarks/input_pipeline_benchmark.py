"""Input-pipeline benchmark: images/s delivered by tf.data vs DALI on the CPU.

Reads the built-in synthetic ImageFolder (generated once, JPEG only, at
``--source-size`` px so decoding and resizing do real work) and times the
EfficientNet training transform (random-resized crop, flip, optional
AutoAugment, normalize) and the eval transform (resize + centre crop) of
each backend, with no model attached: the figure is what the pipeline alone
can feed. Each run reads an endless stream (tf.data: ``build_dataset(...)
.repeat()``; DALI: `dali.build_dali_stream`), skips ``--warmup`` batches,
then times ``--batches`` batches:

* ``images_per_s``: images / wall seconds (what a trainer would be fed);
* ``images_per_cpu_s``: images / CPU seconds of this process, all threads
  (the cost; much less sensitive than wall time to other jobs on the CPU).

Configurations run ``--repeats`` times, interleaved, and report the median.

    python benchmarks/input_pipeline_benchmark.py --out benchmarks/input_pipeline_cpu.json
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.command.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()
import tensorflow as tf  # noqa: E402

from dataset.make_synthetic_imagefolder import make_imagefolder  # noqa: E402
from efficientnet_tf2 import data  # noqa: E402

BACKENDS = ("tfdata", "dali-cpu")
AUGMENTS = ("none", "autoaugment")


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None,
                        help="ImageFolder root (default: generate one under the temp dir, reused)")
    parser.add_argument("--num-images", type=int, default=512, help="train images to generate")
    parser.add_argument("--source-size", type=int, default=256, help="side of generated images")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("-b", "--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=4, help="untimed batches")
    parser.add_argument("--batches", type=int, default=16, help="timed batches")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--augment", nargs="+", default=list(AUGMENTS), choices=AUGMENTS)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--no-eval", action="store_true", help="skip the eval transform")
    parser.add_argument("--out", default=None, help="JSON results file")
    return parser.parse_args(argv)


def _dataset_dir(args):
    """The ImageFolder to read: --data-dir, or a generated one (made once)."""
    if args.data_dir:
        return args.data_dir
    classes = 8
    per_class = -(-args.num_images // classes)
    root = os.path.join(tempfile.gettempdir(),
                        f"input_pipeline_bench_{classes}x{per_class}_{args.source_size}px")
    marker = os.path.join(root, ".complete")
    if not os.path.exists(marker):
        print(f"generating {classes * per_class} images at {args.source_size} px in {root} ...")
        make_imagefolder(root, num_classes=classes, train_per_class=per_class,
                         val_per_class=per_class // 4, image_size=args.source_size, png_every=0)
        open(marker, "w").close()
    return root


def _stream(backend, root, args, training, augment):
    """Endless batched dataset of one backend and transform."""
    if backend == "tfdata":
        return data.build_dataset(root, "train" if training else "val", args.image_size,
                                  args.batch_size, training=training, augment=augment,
                                  seed=0, drop_remainder=True).repeat()
    from efficientnet_tf2 import dali

    folder = data.ImageFolder.from_dir(root, "train" if training else "val")
    return dali.build_dali_stream(folder, args.image_size, args.batch_size, training, augment,
                                  device="cpu", seed=0)


def _time(dataset, warmup, batches):
    """(seconds to first batch, timed wall seconds, timed CPU seconds) reading `dataset`."""
    start = time.perf_counter()
    iterator = iter(dataset)
    next(iterator)
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        images, _ = next(iterator)
        images.numpy()  # the batch is materialized on the host
    return first, time.perf_counter() - wall, time.process_time() - cpu


def _run_one(backend, root, args, training, augment):
    """One timed run: {images_per_s, images_per_cpu_s, first_batch_s, load_average}."""
    first, wall, cpu = _time(_stream(backend, root, args, training, augment), args.warmup, args.batches)
    images = args.batch_size * args.batches
    run = {"images_per_s": round(images / wall, 1), "images_per_cpu_s": round(images / cpu, 1),
           "first_batch_s": round(first, 2), "load_average": round(os.getloadavg()[0], 2)}
    print(json.dumps(dict(backend=backend, training=training, augment=augment, **run)), flush=True)
    return run


def _summary(config, runs):
    """Result row of one configuration: medians plus every run."""
    backend, training, augment = config
    return {"backend": backend, "transform": "train" if training else "eval", "augment": augment,
            "images_per_s": float(np.median([r["images_per_s"] for r in runs])),
            "images_per_cpu_s": float(np.median([r["images_per_cpu_s"] for r in runs])),
            "runs": runs}


def main(argv=None):
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    root = _dataset_dir(args)
    configs = [(b, True, a) for a in args.augment for b in args.backends]
    if not args.no_eval:
        configs += [(b, False, "none") for b in args.backends]
    meta = {"cpu_cores": len(os.sched_getaffinity(0)), "machine": platform.machine(),
            "tensorflow": tf.__version__, "dali": _dali_version(), "data_dir": root,
            "train_images": len(data.ImageFolder.from_dir(root, "train")),
            "source_size": args.source_size, "image_size": args.image_size,
            "batch_size": args.batch_size, "warmup": args.warmup, "batches": args.batches,
            "load_average_before": round(os.getloadavg()[0], 2),
            "dali_threads": len(os.sched_getaffinity(0)), "tfdata_threads": "AUTOTUNE"}
    runs = {config: [] for config in configs}
    for _ in range(args.repeats):
        for config in configs:
            runs[config].append(_run_one(config[0], root, args, config[1], config[2]))
    rows = [_summary(config, runs[config]) for config in configs]
    meta["load_average_after"] = round(os.getloadavg()[0], 2)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=1)
            f.write("\n")
        print(f"wrote {args.out}")
    return 0


def _dali_version():
    try:
        import nvidia.dali
        return nvidia.dali.__version__
    except ImportError:
        return None


if __name__ == "__main__":
    sys.exit(main())
