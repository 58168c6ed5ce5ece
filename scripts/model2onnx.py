"""Seed 003's ``model2onnx.py``: same as ``python main.py export --format onnx ...``.

Example::

    python scripts/model2onnx.py --arch efficientnet-quant-b0 --pretrained-from-file qat.weights.h5 -b 1 --trt True

``-b`` and ``--trt`` are accepted for NVIDIA's command line: the ONNX batch axis is
dynamic, and QAT models always get TensorRT-style QuantizeLinear/DequantizeLinear pairs.
"""
import argparse
import sys

from _entry import dispatch


def main_argv(argv):
    """NVIDIA's flags -> ``main.py export --format onnx`` argv."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-b", "--batch-size", type=int, default=None)
    parser.add_argument("--trt", default=None)
    _, rest = parser.parse_known_args(argv)
    return ["export", "--format", "onnx"] + rest


if __name__ == "__main__":
    sys.exit(dispatch([], main_argv(sys.argv[1:])))
