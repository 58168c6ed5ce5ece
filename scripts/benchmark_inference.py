"""Same as ``python main.py benchmark --kind inference ...``: img/s and true p50/p90/p95/p99 latency.

Example::

    python scripts/benchmark_inference.py --model efficientnet-b0 keras-efficientnetb0 -b 1 8 32 --image-size 224
    python scripts/benchmark_inference.py --model mask-rcnn --batch_size 2 4 --amp   # NVIDIA's spelling
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["benchmark", "--kind", "inference"] + sys.argv[1:]))
