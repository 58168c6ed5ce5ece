"""``main.py weights list | path NAME | download NAME``: the weights registry from the command line (no TensorFlow)."""
from __future__ import annotations

import argparse
import os
from typing import Sequence

from common.weights import download, registry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py weights", description="Published weights by name (--pretrained NAME). Cache: "
        f"${download.HOME_ENV}/weights (now {os.path.join(download.home(), 'weights')}); mirror: "
        f"${download.MIRROR_ENV}.")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the registry: name, models it fits, format, data, published accuracy, licence")
    for action, text in (("path", "where NAME is cached (or must be put by hand when offline)"),
                         ("download", "fetch NAME now (for a machine without internet: copy the file to its path)")):
        sub.add_parser(action, help=text).add_argument("name")
    return parser


def main(argv: Sequence[str]) -> int:
    """Runs a ``weights`` action; returns the exit status (errors: one line, raised as SystemExit)."""
    args = build_parser().parse_args(list(argv))
    if args.action == "list":
        print(registry.table(), end="")
        print(f"cache: {os.path.join(download.home(), 'weights')}")
        return 0
    entry = registry.get(args.name)
    if args.action == "path":
        path = download.cache_path(entry)
        print(f"{path} ({'cached' if os.path.isfile(path) else 'not cached'}; source {entry.url})")
        return 0
    path = download.fetch(entry)
    with open(path + ".sha256") as handle:
        print(f"{path}\nsha256 {handle.read().split()[0]}")
    return 0
