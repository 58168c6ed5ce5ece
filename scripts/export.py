"""Same as ``python main.py export ...``: export with any registered model.

Example::

    python scripts/export.py --model efficientnet-b0 --help
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export"] + sys.argv[1:]))
