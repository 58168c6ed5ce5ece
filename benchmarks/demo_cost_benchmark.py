"""What a run's pictures, per-class metrics, worst images, TensorBoard and report cost ``make demo``, end to end.

The same driver (this tree's ``scripts/demo.py``, hence the same commands, data and recipes) runs against the
product at ``--base`` (a commit before them; a ``git worktree`` with this tree's demo script and built custom
ops copied in) and against this tree, one after the other on the same machine (``--order`` to swap).
Each demo's own "Times:" line gives the per-step seconds; the JSON holds both and their ratio.

    python benchmarks/demo_cost_benchmark.py --base d8880c3 --out benchmarks/demo_cost_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = ("scripts/demo.py", "scripts/convergence_check.py")


def worktree(base: str, where: str) -> str:
    """A checkout of ``base`` at ``where`` with this tree's demo driver and built custom ops."""
    subprocess.run(["git", "worktree", "add", "--detach", where, base], cwd=ROOT, check=True, capture_output=True)
    for path in DRIVER:
        shutil.copy(os.path.join(ROOT, path), os.path.join(where, path))
    built = os.path.join(ROOT, "custom_ops", "_build")
    if os.path.isdir(built):
        shutil.copytree(built, os.path.join(where, "custom_ops", "_build"), dirs_exist_ok=True)
    return where


def run_demo(root: str, out: str) -> dict:
    """Runs the demo in ``root``; returns ``{"steps": {name: s}, "total": s, "wall": s}``."""
    start = time.time()
    done = subprocess.run([sys.executable, "scripts/demo.py", "--out", out], cwd=root, capture_output=True, text=True)
    wall = time.time() - start
    if done.returncode:
        raise RuntimeError(f"demo failed in {root}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    line = next(l for l in done.stdout.splitlines() if l.startswith("Times: "))
    steps = {name: float(s) for name, s in re.findall(r"([a-z]+ [a-z]+) (\d+)s", line)}
    total = float(re.search(r"total (\d+)s", line).group(1))
    return {"steps": steps, "total": total, "wall": round(wall, 1), "tail": done.stdout.splitlines()[-12:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="commit before the pictures (e.g. d8880c3)")
    parser.add_argument("--order", default="base,head", choices=["base,head", "head,base"])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "demo_cost_cpu.json"))
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="demo_cost_")
    roots = {"base": worktree(args.base, os.path.join(scratch, "base")), "head": ROOT}
    results = {}
    try:
        for name in args.order.split(","):
            results[name] = run_demo(roots[name], os.path.join(scratch, f"out_{name}"))
            print(name, json.dumps({k: v for k, v in results[name].items() if k != "tail"}), flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", roots["base"]], cwd=ROOT, capture_output=True)
    head, base = results["head"], results["base"]
    summary = {"base": args.base, "order": args.order, "results": results,
               "ratio_total": round(head["total"] / base["total"], 4),
               "ratio_steps": {k: round(head["steps"][k] / base["steps"][k], 3) for k in base["steps"]
                               if base["steps"][k] and k in head["steps"]},
               "head_outputs": os.path.join(scratch, "out_head")}
    with open(args.out, "w") as handle:
        json.dump(summary, handle, indent=1)
    print(f"head / base total: {summary['ratio_total']}; per step: {summary['ratio_steps']}\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
