"""Same as ``python main.py infer ...`` (NVIDIA's ``scripts/inference.py``): run inference with any registered model.

Example::

    python scripts/inference.py --model efficientnet-b0 --help
"""
import sys

from _entry import dispatch

if __name__ == "__main__":
    sys.exit(dispatch(["infer"]))
