"""torchvision ``.pth`` -> ``.npz`` state_dict (no torch needed: :mod:`common.io.pth` reads the file).

    python scripts/convert_torchvision_checkpoint.py resnet50-0676ba61.pth resnet50.npz
    python main.py train --model mask-rcnn --backbone-checkpoint resnet50.npz DATA

Only numpy is needed (no TensorFlow, no torch): every floating tensor is stored as float32 under
its ``state_dict`` key; ``num_batches_tracked`` counters are dropped. ``main.py`` reads the
``.pth`` itself just as well; the ``.npz`` is for tools that want plain arrays.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def convert(src: str, dst: str) -> int:
    """Writes ``src``'s state_dict to ``dst`` (.npz); returns the number of tensors."""
    from common.io.state_dict import read_state_dict

    arrays = {k: v for k, v in read_state_dict(src).items() if not k.endswith("num_batches_tracked")}
    np.savez(dst, **arrays)
    return len(arrays)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="torchvision checkpoint (.pth)")
    parser.add_argument("dst", help="output .npz")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"wrote {convert(args.src, args.dst)} tensors to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
