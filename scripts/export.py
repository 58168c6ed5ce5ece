"""Same as ``python main.py export ...`` (NVIDIA's ``scripts/export.py``): export with any registered model.

Example::

    python scripts/export.py --model efficientnet-b0 --help
"""
import sys

from _entry import dispatch

if __name__ == "__main__":
    sys.exit(dispatch(["export"]))
