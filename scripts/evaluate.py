"""Same as ``python main.py eval ...`` (NVIDIA's ``scripts/evaluate.py``): evaluate with any registered model.

Example::

    python scripts/evaluate.py --model efficientnet-b0 --help
"""
import sys

from _entry import dispatch

if __name__ == "__main__":
    sys.exit(dispatch(["eval"]))
