"""The Python API's loader: the command line's own parsing and model loading, called from Python.

``Classifier.from_workspace`` / ``from_pretrained`` and ``Detector.from_workspace`` / ``from_pretrained``
go through here, so a model loads exactly as ``main.py infer`` loads it (``config.json`` of the run,
checkpoint choice, ``--pretrained`` download and the fields the weights need).
"""
from __future__ import annotations

from typing import Any, Sequence, Tuple


_NO_IMAGES = "(images come from Python)"  # infer's IMAGES positional: parsed, never read by load_model


def load_for_inference(flags: Sequence[str]) -> Tuple[Any, Any, Any]:
    """``main.py infer`` flags (``--workspace W``, ``--model M --pretrained=NAME``, ...) -> ``(family, experiment,
    model)``; user errors raise SystemExit / UserError with the command line's one-line message."""
    from common.command import cli, commands
    from common.weights import pretrained

    invocation = pretrained.apply(cli.parse(["infer", *flags, _NO_IMAGES]))
    experiment, model = commands.load_model(invocation)
    return invocation.family, experiment, model
