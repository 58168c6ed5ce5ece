"""Where the time goes when onnxruntime and OpenVINO run B0's int8 Q/DQ graph (slower than its float graph).

Per-op profiles of the FP32 ONNX export and of its static int8 Q/DQ file (``export --format onnx --quantize int8``'s
quantizer, calibrated on synthetic crops; random weights do not change the speed), batch 1 and 8 at 224 px:

* onnxruntime: ``SessionOptions.enable_profiling``; the "Node" events' durations summed per op type;
* OpenVINO (f32 arithmetic, latency hint): ``PERF_COUNT``; ``get_profiling_info()`` summed per node type and the
  kernel that ran it (``exec_type``: e.g. ``jit_avx512_I8`` is an int8 kernel, ``..._FP32`` a float one).

    python benchmarks/int8_profile.py --json benchmarks/int8_profile_cpu.json
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _ms_per_call(totals: dict, calls: int) -> dict:
    return {key: round(value / calls, 3) for key, value in sorted(totals.items(), key=lambda kv: -kv[1])}


def ort_profile(path: str, images, calls: int) -> dict:
    """onnxruntime: ms per call by op type (the graph as onnxruntime optimised it; 5 warm-up calls left out)."""
    import onnxruntime as ort

    from common.io.onnx_runtime import cpu_count

    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_count()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="ort_profile_"), "p")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for _ in range(5 + calls):
        session.run(None, {"images": images})
    nodes = [event for event in json.load(open(session.end_profiling()))
             if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")]
    per_call = len(nodes) // (5 + calls)
    totals = collections.Counter()
    for event in nodes[5 * per_call:]:
        totals[event["args"]["op_name"]] += event["dur"] / 1000.0
    return _ms_per_call(totals, calls)


def openvino_profile(path: str, images, calls: int) -> dict:
    """OpenVINO (f32 arithmetic, latency hint, one thread per core): ms per call by ``node type / exec type``."""
    import openvino as ov

    from common.io.onnx_runtime import cpu_count

    compiled = ov.Core().compile_model(path, "CPU", {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True,
                                                    "INFERENCE_PRECISION_HINT": "f32",
                                                    "INFERENCE_NUM_THREADS": cpu_count()})
    request = compiled.create_infer_request()
    for _ in range(5):
        request.infer({0: images})
    totals = collections.Counter()
    for _ in range(calls):
        request.infer({0: images})
        for info in request.get_profiling_info():
            if info.real_time.total_seconds() > 0:
                totals[f"{info.node_type} / {info.exec_type}"] += info.real_time.total_seconds() * 1000.0
    return _ms_per_call(totals, calls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("-b", "--batch-sizes", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    from efficientnet_tf2.benchmark import _images, exported_file

    files = {"FP32": exported_file("efficientnet-b0", 224, 1000, "onnx", False),
             "INT8": exported_file("efficientnet-b0", 224, 1000, "onnx", True)}
    report = {}
    for batch in args.batch_sizes:
        images = _images(batch, 224)
        for precision, path in files.items():
            for runtime, profile in (("onnxruntime", ort_profile), ("openvino", openvino_profile)):
                ops = profile(path, images, args.calls)
                key = f"{runtime} {precision} b{batch}"
                report[key] = {"total_ms": round(sum(ops.values()), 2), "ops": ops}
                top = ", ".join(f"{name} {ms}" for name, ms in list(ops.items())[:8])
                print(f"{key}: {report[key]['total_ms']} ms of kernels per call; {top}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
