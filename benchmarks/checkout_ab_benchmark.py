"""Two checkouts of this repository timed against each other, alternating, on one machine in one run.

Runs ``main.py benchmark`` of checkout A, then B, then A, then B (``--rounds``) for each case, each in a
fresh process, and reads the img/s of every row from the DLLogger file. The ratio B/A per round shows the
change against the machine's noise (the same case run twice). Example (the architecture refactor of
issue 29, previous commit in a worktree)::

    git worktree add /tmp/before 67c6cf8
    python benchmarks/checkout_ab_benchmark.py --a /tmp/before --b . --out benchmarks/arch_refactor_cpu.json
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

#: name -> ``main.py benchmark`` arguments (the flags both checkouts understand).
CASES = {
    "efficientnet-b0 training b8 224px": ["--kind", "training", "--model", "efficientnet-b0", "-b", "8",
                                          "--image-size", "224", "--warmup-steps", "3", "--iters", "10"],
    "efficientnet-b0 inference b8 224px": ["--kind", "inference", "--model", "efficientnet-b0", "-b", "8",
                                           "--image-size", "224", "--warmup-steps", "3", "--iters", "20"],
    "mask-rcnn training b1 512px": ["--kind", "training", "--model", "mask-rcnn", "-b", "1", "--image-size", "512",
                                    "512", "--warmup-steps", "2", "--iters", "5"],
    "mask-rcnn inference b1 512px": ["--kind", "inference", "--model", "mask-rcnn", "-b", "1", "--image-size", "512",
                                     "512", "--warmup-steps", "2", "--iters", "8"],
}


def run_case(checkout: str, args, python: str) -> float:
    """img/s of one ``main.py benchmark`` process of ``checkout`` (its only row)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "b.json")
        env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout), TF_CPP_MIN_LOG_LEVEL="2")
        subprocess.run([python, "main.py", "benchmark", *args, "--log-file", log], cwd=checkout, env=env,
                       check=True, capture_output=True, text=True)
        rows = [json.loads(line[5:]) for line in open(log) if line.startswith("DLLL")]
        values = [r["data"]["throughput"] for r in rows if "throughput" in r.get("data", {})]
        return float(values[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="checkout A (before)")
    parser.add_argument("--b", required=True, help="checkout B (after)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", help="JSON results")
    args = parser.parse_args(argv)
    results = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "cases": {}}
    for name in args.cases:
        runs = {"a": [], "b": []}
        for _ in range(args.rounds):
            for side in ("a", "b"):
                runs[side].append(run_case(getattr(args, side), CASES[name], sys.executable))
                print(f"{name}: {side} {runs[side][-1]:.3f} img/s", flush=True)
        ratios = [b / a for a, b in zip(runs["a"], runs["b"])]
        results["cases"][name] = {**runs, "ratio_b_over_a": ratios}
        print(f"{name}: B/A per round {', '.join(f'{r:.3f}' for r in ratios)}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
