"""EfficientNet's training input pipeline (decode + random-resized crop + augment, batch 32, 224 px) with and
without the pixel-budget check before decoding (``data.read_within_budget``): 256 generated 400x300 JPEGs, two
epochs per measurement, 14 alternating rounds; prints img/s per round and the median guard/plain ratio.

    python benchmarks/pixel_guard_benchmark.py
"""
import os, sys, time, tempfile
import numpy as np, tensorflow as tf
from PIL import Image
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from efficientnet_tf2 import data
root = tempfile.mkdtemp()
rng = np.random.default_rng(0)
for c in range(4):
    os.makedirs(f"{root}/train/c{c}")
    for i in range(64):
        Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(f"{root}/train/c{c}/{i}.jpg", quality=85)
guarded = data.read_within_budget
def rate():
    ds = data.build_dataset(root, "train", 224, 32, training=True, seed=0)
    n, t = 0, time.perf_counter()
    for _ in range(2):
        for x, y in ds: n += len(y)
    return n / (time.perf_counter() - t)
res = {"guard": [], "plain": []}
for r in range(14):
    for name in (("guard", "plain") if r % 2 == 0 else ("plain", "guard")):
        data.read_within_budget = guarded if name == "guard" else tf.io.read_file
        res[name].append(rate())
print({k: [round(v, 1) for v in vs] for k, vs in res.items()}, "guard/plain median ratio",
      round(float(np.median(np.array(res["guard"]) / np.array(res["plain"]))), 3))
