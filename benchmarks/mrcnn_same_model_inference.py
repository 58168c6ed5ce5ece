"""800x1216 Mask R-CNN inference of one seeded random-weight model on two fixed inputs, for old-vs-new
comparisons across commits: run it from a ``git worktree`` of each commit (``python <this file> LABEL``).

Inputs: the benchmark's ``synthetic_batch`` (normal noise) and seeded uint8 noise preprocessed by the
export's code. Prints ``RESULT LABEL {json}`` with detections, p50 seconds and img/s (1 + 5 timed calls).
"""
import sys, time, json, numpy as np, tensorflow as tf, tf_keras as keras
sys.path.insert(0, ".")
from mrcnn_tf2.config import MaskRCNNConfig
from mrcnn_tf2.data.inputs import InputConfig
from mrcnn_tf2.data.synthetic import synthetic_batch
from mrcnn_tf2.task import built_model
from mrcnn_tf2.export import preprocess_batch
import dataclasses
inputs = InputConfig(image_size=(800, 1216))
config = dataclasses.replace(MaskRCNNConfig(), image_size=inputs.batch_padded_size()) if hasattr(MaskRCNNConfig(), "image_size") else MaskRCNNConfig()
keras.utils.set_random_seed(0)
model = built_model(config)
f = tf.function(lambda x, i: model({"images": x, "image_info": i}, training=False))
normal, _ = synthetic_batch(config, inputs, 1)
u8 = np.random.default_rng(0).integers(0, 256, size=(1, 800, 1216, 3), dtype=np.uint8)
x, info = preprocess_batch(tf.constant(u8), inputs, inputs.batch_padded_size())
out = {}
for name, (a, b) in {"normal": (normal["images"], normal["image_info"]), "uint8": (x, info)}.items():
    r = f(a, b); n = r["num_detections"].numpy().tolist()
    r = f(a, b)["detection_scores"].numpy()
    ts = []
    for _ in range(5):
        t = time.perf_counter(); f(a, b)["detection_scores"].numpy(); ts.append(time.perf_counter() - t)
    out[name] = {"detections": n, "p50_s": float(np.median(ts)), "img_s": 1 / float(np.mean(ts))}
print("RESULT", sys.argv[1], json.dumps(out))
