"""Classify image files with a trained EfficientNet (seed 003's ``classify.py``).

Example::

    python scripts/classify.py --arch efficientnet-b0 --checkpoint workspace/model_best \
        --precision FP32 --image cat.jpg dog.png

``--image`` is accepted as in NVIDIA's script; positional paths work too.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from main import main  # noqa: E402


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
    sys.exit(main(["infer"] + translate(sys.argv[1:])))
