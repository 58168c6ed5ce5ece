"""Command-line entry point: ``python main.py MODE --model NAME [options]``.

MODE is ``train | eval | infer | export | info``. The model name selects the
family (``efficientnet-*`` or ``mask-rcnn``);
each family adds its own options, shown by ``python main.py MODE --model NAME -h``.
"""
from __future__ import annotations

import argparse
import sys

MODES = ("train", "eval", "infer", "export", "info")


def _families():
    """Model families, imported lazily so ``--help`` stays fast."""
    from efficientnet_tf2 import cli as efficientnet_cli

    families = [efficientnet_cli]
    try:
        from mrcnn_tf2 import cli as mrcnn_cli  # noqa: WPS433 (optional family)
        families.append(mrcnn_cli)
    except ImportError:
        pass
    return families


def _family_for(model: str):
    for family in _families():
        if model in family.list_models():
            return family
    names = sorted(n for f in _families() for n in f.list_models())
    raise SystemExit(f"error: unknown --model {model!r}. Available: {', '.join(names)}")


def build_parser(mode: str, model: str) -> argparse.ArgumentParser:
    """Full parser of ``MODE --model MODEL`` with the family's options."""
    family = _family_for(model)
    parser = argparse.ArgumentParser(
        prog=f"main.py {mode}", description=f"{mode} {model}",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", "--arch", default=model, help="registered model name")
    family.add_arguments(parser, mode)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(
        prog="main.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: python main.py train --model efficientnet-b0 --amp /data/imagenet")
    top.add_argument("mode", choices=MODES)
    top.add_argument("--model", "--arch", default="efficientnet-b0", help="model name (see `info`)")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    known, _ = top.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    args = build_parser(known.mode, known.model).parse_args(argv[1:])
    return int(_family_for(args.model).run(known.mode, args) or 0)


if __name__ == "__main__":
    sys.exit(main())
