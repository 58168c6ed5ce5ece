"""onnxruntime on this CPU: throughput by batch size, a large batch run in chunks, opset, session options.

EfficientNet-B0 (random weights, ``main.py export --format onnx``'s graph) at 224 px, the TensorFlow
``tf.function`` row in the same process for the ratio; img/s = images / median time of ``--iters`` runs::

    python benchmarks/onnxruntime_batching.py --out benchmarks/onnxruntime_batching_cpu.json
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.command.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()


def throughput(step, images: int, iters: int, warmup: int = 3) -> float:
    """``images`` / median seconds of ``step()`` over ``iters`` runs after ``warmup``."""
    from common.command.benchmark import time_steps

    return round(images / statistics.median(time_steps(step, warmup, iters)), 2)


def session(path: str, threads: int, config=None, **attributes):
    """CPU session with every optimisation on, ``config`` session entries and SessionOptions ``attributes``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    for key, value in attributes.items():
        setattr(options, key, value)
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def chunked(sess, images, chunk: int):
    """One call per ``chunk`` images of the batch (outputs concatenated, as a runner would)."""
    import numpy as np

    def run():
        return np.concatenate([sess.run(["probabilities"], {"images": images[i:i + chunk]})[0]
                               for i in range(0, len(images), chunk)])
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet-b0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    import numpy as np
    import tempfile

    from common.io.onnx_runtime import cpu_count
    from efficientnet_tf2 import benchmark, onnx_export

    cores, size, rows = cpu_count(), args.image_size, []
    _, model = benchmark._task_and_model(args.model, size, None)  # pylint: disable=protected-access
    paths = {opset: onnx_export.export_onnx(model, os.path.join(tempfile.mkdtemp(), "m.onnx"), size, opset=opset)
             for opset in (13, 17)}
    rng = np.random.default_rng(0)

    def record(**row):
        rows.append({"model": args.model, "cores": cores, **row})
        print(json.dumps(rows[-1]), flush=True)

    batch32 = rng.integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    tf_step = benchmark.make_infer_step(args.model, 32, size)
    record(runtime="tf", batch=32, setting="tf.function", img_per_s=throughput(tf_step, 32, args.iters))
    for opset, path in paths.items():
        sess = session(path, cores)
        for batch in (1, 2, 4, 8, 16, 32):
            record(runtime="onnxruntime", batch=batch, setting=f"opset {opset}",
                   img_per_s=throughput(chunked(sess, batch32[:batch], batch), batch, args.iters))
    sess = session(paths[13], cores)
    for chunk in (1, 2, 4, 8):
        record(runtime="onnxruntime", batch=32, setting=f"chunks of {chunk}",
               img_per_s=throughput(chunked(sess, batch32, chunk), 32, args.iters))
    variants = {"no spinning": dict(config={"session.intra_op.allow_spinning": "0"}),
                "no memory pattern": dict(enable_mem_pattern=False),
                "no cpu arena": dict(enable_cpu_mem_arena=False),
                "denormals as zero": dict(config={"session.set_denormal_as_zero": "1"})}
    for name, kwargs in variants.items():
        sess = session(paths[13], cores, **kwargs)
        for batch in (1, 32):
            record(runtime="onnxruntime", batch=batch, setting=name,
                   img_per_s=throughput(chunked(sess, batch32[:batch], batch), batch, args.iters))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
