"""Same as ``python main.py train ...`` (NVIDIA's ``scripts/train.py``): train with any registered model.

Example::

    python scripts/train.py --model efficientnet-b0 --help
"""
import sys

from _entry import dispatch

if __name__ == "__main__":
    sys.exit(dispatch(["train"]))
