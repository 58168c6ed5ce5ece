"""training benchmark: img/s and true p50/p90/p95/p99 latency per batch size.

Example::

    python scripts/benchmark_training.py --model efficientnet-b0 keras-efficientnetb0 -b 1 8 32 --image-size 224
"""
import sys

from _benchmark import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:], "training"))
