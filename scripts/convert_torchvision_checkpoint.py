"""torchvision ``.pth`` -> ``.npz`` state_dict that loads without torch (run where torch is installed).

    python scripts/convert_torchvision_checkpoint.py resnet50-0676ba61.pth resnet50.npz
    python main.py train --model mask-rcnn --backbone-checkpoint resnet50.npz DATA

Only torch and numpy are needed (no TensorFlow): every floating tensor is stored as float32 under
its ``state_dict`` key; ``num_batches_tracked`` counters are dropped. The ``.pth`` itself loads
the same way where torch is installed in the project's environment.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def convert(src: str, dst: str) -> int:
    """Writes ``src``'s state_dict to ``dst`` (.npz); returns the number of tensors."""
    try:
        import torch
    except ImportError:
        raise SystemExit("error: this conversion needs torch (pip install torch); the .npz it writes does not")
    state = torch.load(src, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    arrays = {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in state.items()
              if not k.endswith("num_batches_tracked")}
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
