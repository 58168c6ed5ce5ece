"""Starts N local training workers for ``--dist multiworker`` (like NVIDIA's ``multiproc.py``).

Usage::

    python scripts/launch.py --nproc 2 main.py train --model efficientnet-b0 --dist multiworker ...

Each worker runs the forwarded command with ``TF_CONFIG`` naming a cluster of
``--nproc`` workers on free loopback ports and its own task index (worker 0 is
the chief: it alone writes checkpoints and logs). Output lines are prefixed
with ``[worker i]``. If a worker fails, the others are stopped and the
launcher exits with that worker's status; Ctrl-C stops all of them.
A command starting with a ``.py`` file runs with this Python interpreter.
``--pin-gpus`` gives worker i only GPU i (``CUDA_VISIBLE_DEVICES=i``).

Seed 003's benchmark launcher spelling (``launch.py --model efficientnet-b0 --precision AMP
--mode benchmark_training ...``, no ``--nproc``) runs ``main.py benchmark`` instead.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import List, Optional, Sequence

GRACE_SECONDS = 10.0


def free_ports(count: int, host: str = "127.0.0.1") -> List[int]:
    """``count`` distinct TCP ports that were free on ``host`` a moment ago."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def tf_config(index: int, addresses: Sequence[str]) -> str:
    """``TF_CONFIG`` JSON of worker ``index`` in a cluster of ``addresses``."""
    return json.dumps({"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}})


def worker_command(command: Sequence[str]) -> List[str]:
    """The forwarded command, with this interpreter in front of a leading ``.py`` file."""
    command = list(command)
    if command and command[0].endswith(".py"):
        command.insert(0, sys.executable)
    return command


def _stream(proc: subprocess.Popen, prefix: str) -> None:
    """Copies ``proc``'s output to our stdout, one prefixed line at a time."""
    for line in iter(proc.stdout.readline, b""):
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


def start_workers(command: Sequence[str], nproc: int, host: str = "127.0.0.1",
                  pin_gpus: bool = False) -> List[subprocess.Popen]:
    """Starts ``nproc`` workers (each in its own process group) with their ``TF_CONFIG``."""
    addresses = [f"{host}:{port}" for port in free_ports(nproc, host)]
    procs = []
    for index in range(nproc):
        env = dict(os.environ, TF_CONFIG=tf_config(index, addresses), PYTHONUNBUFFERED="1")
        if pin_gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(index)
        proc = subprocess.Popen(worker_command(command), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=_stream, args=(proc, f"[worker {index}] "), daemon=True).start()
        procs.append(proc)
    return procs


def stop(procs: Sequence[subprocess.Popen]) -> None:
    """SIGTERM to every running worker's process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 0.0)):
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.1)


def wait_all(procs: Sequence[subprocess.Popen], poll_seconds: float = 0.2) -> int:
    """Waits for every worker; on the first failure stops the rest. Returns the exit status."""
    while True:
        codes = [p.poll() for p in procs]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            index, code = failed[0]
            print(f"[launch] worker {index} exited with status {code}; stopping the others", file=sys.stderr)
            stop(procs)
            return code if code > 0 else 128 - code
        if all(c == 0 for c in codes):
            return 0
        time.sleep(poll_seconds)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", "--nproc_per_node", "--nproc-per-node", dest="nproc", type=int, required=True,
                        help="number of local worker processes")
    parser.add_argument("--host", default="127.0.0.1", help="address the workers listen on (default: loopback)")
    parser.add_argument("--pin-gpus", action="store_true", help="worker i sees only GPU i")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="training command, e.g. main.py train ...")
    args = parser.parse_args(argv)
    if args.nproc < 1:
        parser.error(f"--nproc must be >= 1. Received: --nproc {args.nproc}")
    if not args.command:
        parser.error("give the command to run, e.g. main.py train --model efficientnet-b0 --dist multiworker ...")
    return args


def is_nvidia_benchmark_launch(argv: Sequence[str]) -> bool:
    """Seed 003's ``launch.py --model X --mode benchmark_training ...`` (a benchmark, not workers)."""
    return "--mode" in argv and not any(a.split("=")[0] in ("--nproc", "--nproc_per_node", "--nproc-per-node")
                                        for a in argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if is_nvidia_benchmark_launch(argv):
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from main import main as run_main

        return run_main(argv)
    args = parse_args(argv)
    procs = start_workers(args.command, args.nproc, args.host, args.pin_gpus)
    try:
        return wait_all(procs)
    except KeyboardInterrupt:
        stop(procs)
        return 130


if __name__ == "__main__":
    sys.exit(main())
