"""Writes the small ``.pth`` fixtures of ``tests/common/io/test_pth.py`` (needs torch; run once, commit the output).

Usage (in a separate venv with torch; the product and CI never need it)::

    python scripts/make_pth_fixtures.py tests/fixtures/pth

For each layout torch writes (zip, torch >= 1.6; legacy, ``_use_new_zipfile_serialization=False``)
it saves one checkpoint holding every case the reader must handle — float32/float16/bfloat16/
float64/int64/int32/uint8/bool tensors, a transposed (non-contiguous) view, a slice at a storage
offset, two tensors sharing one storage, an ``nn.Parameter``, a 0-d tensor, an empty tensor, a
training-checkpoint wrapper with plain values — and ``expected.npz``: the same tensors as torch's
own ``.numpy()`` (floating ones as float32), keyed ``<path with / separators>``.
"""
import collections
import os
import sys

import numpy as np
import torch


def checkpoint():
    torch.manual_seed(0)
    base = torch.randn(6, 5)
    shared = torch.arange(20, dtype=torch.float32)
    conv = torch.nn.Conv2d(3, 4, 3)
    state = collections.OrderedDict([
        ("conv.weight", conv.weight), ("conv.bias", conv.bias.detach()),
        ("f16", torch.randn(3, 4).half()), ("bf16", torch.randn(7).bfloat16()), ("f64", torch.randn(2, 2).double()),
        ("i64", torch.arange(-3, 9).reshape(3, 4)), ("i32", torch.arange(5, dtype=torch.int32)),
        ("u8", torch.arange(250, 256, dtype=torch.uint8)), ("mask", torch.tensor([True, False, True])),
        ("transposed", base.t()), ("offset_slice", base[2:5, 1:4]),
        ("shared_a", shared[:10]), ("shared_b", shared[10:].view(2, 5)),
        ("scalar", torch.tensor(3.5)), ("empty", torch.zeros(0, 4)),
        ("bn.num_batches_tracked", torch.tensor(17)),
    ])
    return {"epoch": 3, "arch": "fixture", "best_top1": 0.5, "state_dict": state}


def expected(state):
    out = {}
    for key, value in state.items():
        value = value.detach()
        if value.is_floating_point():
            value = value.float()
        out[key] = value.contiguous().numpy()
    return out


def main(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    ckpt = checkpoint()
    torch.save(ckpt, os.path.join(folder, "zip.pth"))
    torch.save(ckpt, os.path.join(folder, "legacy.pth"), _use_new_zipfile_serialization=False)
    np.savez(os.path.join(folder, "expected.npz"), **expected(ckpt["state_dict"]))
    for name in ("zip.pth", "legacy.pth"):
        print(name, os.path.getsize(os.path.join(folder, name)), "bytes; torch", torch.__version__)


if __name__ == "__main__":
    main(sys.argv[1])
