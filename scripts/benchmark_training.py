"""Same as ``python main.py benchmark --kind training ...``: img/s and true p50/p90/p95/p99 latency.

Examples::

    python scripts/benchmark_training.py --model efficientnet-b0 keras-efficientnetb0 -b 1 8 32 --image-size 224
    python scripts/benchmark_training.py --model mask-rcnn --batch_size 2 4 --amp   # NVIDIA's spelling
"""
import sys

from _entry import dispatch

if __name__ == "__main__":
    sys.exit(dispatch(["benchmark", "--kind", "training"]))
