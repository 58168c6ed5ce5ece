"""``python -m custom_ops.build [op ...]``: prebuild the custom op libraries and print their status.

Without arguments every op folder (``custom_ops/<op>/`` holding a ``*.cc``) is built.
Exit status 1 when any requested op failed to build or load.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List

from custom_ops import loader


def op_names(root: str = loader.OPS_ROOT) -> List[str]:
    """Sorted names of the op folders under ``root``."""
    builder = loader.OpLibraryLoader(root)
    return sorted(name for name in os.listdir(root)
                  if os.path.isdir(os.path.join(root, name)) and builder.sources(name))


def build_one(name: str) -> bool:
    """Builds and loads ``name``; prints one status line."""
    start = time.perf_counter()
    module = loader.load(name)
    seconds = time.perf_counter() - start
    if module is None:
        print(f"{name:<14} FAILED  {loader.failure(name) or 'custom ops disabled'}")
        return False
    print(f"{name:<14} ok      {loader.default_loader().library_path(name)} ({seconds:.1f} s)")
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ops", nargs="*", help="op folders to build (default: all)")
    parser.add_argument("--verbose", action="store_true", help="keep TensorFlow's start-up log lines")
    args = parser.parse_args(argv)
    results = [build_one(name) for name in (args.ops or op_names())]
    return 0 if all(results) else 1


if __name__ == "__main__":
    if "--verbose" not in sys.argv:  # the same quiet start as main.py
        from common.command import runtime

        runtime.quiet_tensorflow()
        runtime.import_tensorflow_quietly()
    sys.exit(main())
