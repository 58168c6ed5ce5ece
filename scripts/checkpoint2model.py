"""Seed 003's ``checkpoint2model.py``: a training checkpoint -> a weights-only file.

Example::

    python scripts/checkpoint2model.py --checkpoint-path workspace/model_best --weight-path b0.weights.h5

The model is rebuilt from the run's ``config.json`` (next to the checkpoint); the
``.weights.h5`` file loads with ``--pretrained-from-file`` (``--use-ema``: the EMA weights).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-path", required=True, help="checkpoint folder (model_best/, checkpoint-latest/)")
    parser.add_argument("--weight-path", required=True, help="output weights file (.weights.h5)")
    parser.add_argument("--use-ema", action="store_true", help="write the EMA weights")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from common.command import cli, commands, config, runtime

    runtime.quiet_tensorflow()
    found = config.find_config(args.checkpoint_path)
    if not found:
        raise SystemExit(f"error: no config.json next to {args.checkpoint_path}: pass the checkpoint of a training run")
    argv = ["export", "--model", config.read_config_dict(found)["model"], "--workspace", os.path.dirname(found),
            "--checkpoint", args.checkpoint_path] + (["--use-ema"] if args.use_ema else [])
    model = commands.load_model(cli.parse(argv))
    path = args.weight_path if args.weight_path.endswith(".weights.h5") else args.weight_path + ".weights.h5"
    model.save_weights(path)
    print(f"weights written to {os.path.abspath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
