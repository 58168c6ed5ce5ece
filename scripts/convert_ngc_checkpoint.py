"""Convert an NVIDIA NGC (PyTorch) EfficientNet checkpoint to Keras weights.

Example::

    python scripts/convert_ngc_checkpoint.py --model efficientnet-b0 \\
        nvidia_efficientnet-b0.pth efficientnet-b0.weights.h5
    python main.py infer --model efficientnet-b0 --padding symmetric \\
        --pretrained-from-file efficientnet-b0.weights.h5 cat.jpg

``.pth``/``.pt`` files are read without torch (:mod:`common.io.pth`), as is an
``.npz`` of the same ``state_dict``. ``main.py`` also reads NGC files directly
with ``--pretrained-from-file`` (or fetches them by name with ``--pretrained``).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_parser() -> argparse.ArgumentParser:
    """Command-line options (no TensorFlow import, so ``--help`` is fast)."""
    from efficientnet_tf2.experiments import classifier_names

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "--arch", required=True, choices=classifier_names(),
                        help="variant the checkpoint belongs to (quant checkpoints: their FP32 "
                             "variant, e.g. efficientnet-b0 for efficientnet-quant-b0)")
    parser.add_argument("--padding", default="symmetric", choices=["symmetric", "same"],
                        help="padding of the Keras model (default: symmetric, as NVIDIA's; 'same' "
                             "loads the same tensors but does not reproduce NVIDIA's outputs)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classifier width (default: read from classifier.fc.weight)")
    parser.add_argument("--save-quantizers", default=None, metavar="AMAX.npz",
                        help="also write the quantizer amax entries of a quant checkpoint here")
    parser.add_argument("checkpoint", help="NGC state_dict: .pth/.pt (needs torch) or .npz")
    parser.add_argument("output", help="Keras weights file to write (.weights.h5)")
    return parser


def convert(args) -> int:
    """Reads the checkpoint, imports it into a fresh model and saves the weights."""
    import numpy as np

    from efficientnet_tf2 import ngc
    from efficientnet_tf2.experiments import classifier_config
    from efficientnet_tf2.model import build_classifier

    if not args.output.endswith(".h5"):
        raise SystemExit(f"error: output must be a .weights.h5 file. Received: {args.output}")
    state = ngc.read_state_dict(args.checkpoint)
    classes = args.num_classes or int(np.shape(state.get("classifier.fc.weight", [[0] * 1000]))[0])
    config = classifier_config(args.model, num_classes=classes, padding=args.padding)
    model = build_classifier(config, name=args.model.replace("-", "_"))
    result = ngc.load_ngc_state_dict(model, state)
    model.save_weights(args.output)
    print(f"imported {len(result.assigned)} tensors of {args.checkpoint} into {args.model} "
          f"({classes} classes, padding={args.padding}); wrote {args.output}")
    if result.quantizers:
        print(f"{len(result.quantizers)} quantizer entries not used by the FP32 model")
        if args.save_quantizers:
            np.savez(args.save_quantizers, **result.quantizers)
            print(f"quantizer amax values written to {args.save_quantizers}")
    print(f"use it with: --model {args.model} --padding {args.padding} --pretrained-from-file {args.output}")
    return 0


def main(argv=None) -> int:
    """Entry point; errors in the checkpoint end with a one-line message."""
    args = build_parser().parse_args(argv)
    from common.command.runtime import quiet_tensorflow

    quiet_tensorflow()
    from efficientnet_tf2.ngc import NgcCheckpointError

    try:
        return convert(args)
    except (NgcCheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
