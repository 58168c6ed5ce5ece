"""Classify image files with a trained EfficientNet (seed 003's ``classify.py``).

Example::

    python scripts/classify.py --arch efficientnet-b0 --checkpoint workspace/model_best \
        --precision FP32 --image cat.jpg dog.png

``--image`` is accepted as in NVIDIA's script; positional paths work too.
"""
import sys

from _entry import dispatch


def translate(argv):
    """Turns ``--image A B`` into positional image paths for ``main.py infer``."""
    out, images, take = [], [], False
    for arg in argv:
        if arg == "--image":
            take = True
        elif take and not arg.startswith("-"):
            images.append(arg)
        else:
            take = False
            out.append(arg)
    return out + images


if __name__ == "__main__":
    sys.exit(dispatch(["infer"], translate(sys.argv[1:])))
