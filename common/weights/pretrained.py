"""``--pretrained [NAME]``: the registered weights fetched and set as the run's initial weights.

The entry's file becomes ``task.pretrained_from_file`` (whole model) or ``task.backbone_checkpoint``
(backbone only, training), and the fields the weights need (NGC's symmetric padding, torchvision's
preset) are set with it, each named in one log line. Outside training the head keeps the weights'
class count unless ``--num-classes`` says otherwise.
"""
from __future__ import annotations

import dataclasses
import logging

from common.weights import download, registry

_log = logging.getLogger(__name__)
_FIELDS = {"model": "task.pretrained_from_file", "backbone": "task.backbone_checkpoint"}


def apply(invocation):
    """``invocation`` with its ``--pretrained`` weights fetched and set (no change without the flag).

    Raises:
      SystemExit: no weights fit the model, backbone weights outside training, or ``--pretrained`` together with
        ``--pretrained-from-file`` (one line).
      DownloadError: the download failed or did not verify (one line naming the URL and the path to fill by hand).
    """
    name = invocation.options.pretrained
    if not name:
        return invocation
    experiment, model = invocation.experiment, invocation.models[0]
    entry = registry.for_model(model, name)
    if invocation.values.get("task.pretrained_from_file"):
        raise SystemExit("error: pass --pretrained or --pretrained-from-file, not both")
    if entry.slot == "backbone" and invocation.mode != "train":
        raise SystemExit(f"error: {entry.name} are backbone weights: they initialise training only "
                         f"(`train --model {model} --pretrained {entry.name}`)")
    path = download.fetch(entry)
    overrides = {_FIELDS[entry.slot]: path, **entry.config}
    if invocation.mode != "train" and not invocation.values.get("data.num_classes") and entry.slot == "model":
        overrides["data.num_classes"] = entry.num_classes
    needed = ", ".join(f"{k}={v}" for k, v in entry.config.items())
    _log.info("--pretrained %s: %s, %s; %s%s", entry.name, entry.dataset, entry.metric, path,
              f" (with {needed})" if needed else "")
    return dataclasses.replace(invocation, experiment=experiment.override(overrides))
