"""What the run pictures cost per epoch: ``curves.png`` and the per-class CSVs + ``confusion.png``.

    python benchmarks/picture_cost_benchmark.py --epochs 16 --classes 10

Writes a synthetic ``raport.json`` one epoch at a time (as a run does) and times the real drawing code after
each epoch (median over epochs), plus the matplotlib import once.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.io.curves import plot_curves  # noqa: E402
from common.io.logger import Logger  # noqa: E402
from efficientnet_tf2.evaluation import write_reports  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp()
    log = os.path.join(folder, "raport.json")
    logger = Logger(log, stream=open(os.devnull, "w"))
    start = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: F401

    import_s = time.perf_counter() - start
    curves, reports = [], []
    names = [f"class{i}" for i in range(args.classes)]
    for epoch in range(1, args.epochs + 1):
        logger.log((epoch,), {"val.loss": 1.0 / epoch, "val.top1": epoch, "val.top5": 2 * epoch})
        logger.log((epoch,), {"train.loss": 1.0 / epoch, "train.lr": 0.01})
        t = time.perf_counter()
        plot_curves(log, os.path.join(folder, "curves.png"), "benchmark")
        curves.append(time.perf_counter() - t)
        confusion = np.random.default_rng(epoch).integers(0, 10, (args.classes, args.classes))
        t = time.perf_counter()
        write_reports(os.path.join(folder, "eval"), confusion, names)
        reports.append(time.perf_counter() - t)
    print(f"matplotlib import {import_s:.2f} s; curves.png per epoch median {np.median(curves):.3f} s; per-class "
          f"CSVs + confusion.png per evaluation median {np.median(reports):.3f} s; {args.epochs} epochs in all "
          f"{import_s + sum(curves) + sum(reports):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
