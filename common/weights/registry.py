"""Published weights by name: one table of where they are, how to check them, what they fit (a model card).

``--pretrained`` takes the entry a model names as its default (:func:`default_for`);
``--pretrained NAME`` any entry that fits the model. ``main.py weights list`` prints the table.
Names are lower-case with ``-``; ``_`` spellings (torchvision's ``maskrcnn_resnet50_fpn_coco``)
are accepted as aliases.

Digests are the publishers' own: torchvision's file names carry the first 8 hex digits of
the file's sha256 (torch.hub checks the same prefix), Keras publishes md5 digests
(``keras.utils.get_file``). NGC publishes none for these files (``sha256=None``): their download is
checked for completeness only, and its sha256 is recorded next to the file (``<file>.sha256``) for
the user to compare.
TF-free: ``--help`` and ``weights list`` import no TensorFlow.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Tuple

_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia"
_KERAS = "https://storage.googleapis.com/keras-applications"
_TORCH = "https://download.pytorch.org/models"


@dataclasses.dataclass(frozen=True)
class Weights:
    """One published weights file.

    Attributes:
      name: registry name (``nvidia-efficientnet-b0``).
      url: where it is published.
      fits: the registered models it loads into (the first is its own recipe).
      format: ``ngc-pth`` | ``torchvision-pth`` | ``keras-h5`` (how it is read; see ``docs/weights.md``).
      slot: ``model`` (the whole model; ``--pretrained-from-file``) or ``backbone`` (``--backbone-checkpoint``).
      dataset: what it was trained on, and its classes.
      num_classes: classes of its head (another ``--num-classes`` re-initialises the head: fine-tuning).
      metric: published accuracy, as the publisher states it.
      licence: the weights' licence / terms, as published.
      sha256: the file's sha256, or its published prefix (torchvision); None: pinned on first download.
      md5: the publisher's md5 (Keras), checked as well.
      config: experiment fields the weights need (``--config``-style keys), e.g. NGC's symmetric padding.
    """

    name: str
    url: str
    fits: Tuple[str, ...]
    format: str
    dataset: str
    num_classes: int
    metric: str
    licence: str
    slot: str = "model"
    sha256: Optional[str] = None
    md5: Optional[str] = None
    config: Mapping[str, object] = dataclasses.field(default_factory=dict)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _ngc(variant: str, path: str, metric: str) -> Weights:
    model = f"efficientnet-{variant}"
    return Weights(f"nvidia-{model}", f"{_NGC}/{path}", (model,), "ngc-pth", "ImageNet-1k", 1000, metric,
                   "NGC terms of use (NVIDIA Deep Learning Examples; code BSD-3-Clause)",
                   config={"task.model.backbone.padding": "symmetric"})


#: Keras applications' md5 digests of the full (with-top) files, as tf_keras publishes them.
_KERAS_MD5 = {"b0": "902e53a9f72be733fc0bcb005b3ebbac", "b1": "1d254153d4ab51201f1646940f018540",
              "b2": "b15cce36ff4dcbd00b6dd88e7857a6ad", "b3": "ffd1fdc53d0ce67064dc6a9c7960ede0",
              "b4": "18c95ad55216b8f92d7e70b3a046e2fc", "b5": "ace28f2a6363774853a83a0b21b9421a",
              "b6": "165f6e37dce68623721b423839de8be5", "b7": "8c03f828fec3ef71311cd463b6759d99"}
_KERAS_TOP1 = {"b0": 77.1, "b1": 79.1, "b2": 80.1, "b3": 81.6, "b4": 82.9, "b5": 83.6, "b6": 84.0, "b7": 84.3}


def _keras(scale: str) -> Weights:
    return Weights(f"keras-efficientnet-{scale}", f"{_KERAS}/efficientnet{scale}.h5", (f"efficientnet-{scale}",),
                   "keras-h5", "ImageNet-1k", 1000, f"top-1 {_KERAS_TOP1[scale]} % (keras.io applications table)",
                   "Apache-2.0 (Keras applications)", md5=_KERAS_MD5[scale],
                   config={"task.model.backbone.padding": "same"})


WEIGHTS: Dict[str, Weights] = {w.name: w for w in (
    _ngc("b0", "efficientnet_b0_pyt_amp/versions/20.12.0/files/nvidia_efficientnet-b0_210412.pth",
         "top-1 77.42 % AMP / 77.16 % TF32 (seed 003, 8x A100, 400 epochs)"),
    _ngc("b4", "efficientnet_b4_pyt_amp/versions/20.12.0/files/nvidia_efficientnet-b4_210412.pth",
         "top-1 82.85 % AMP / 82.82 % TF32 (seed 003)"),
    _ngc("widese-b0", "efficientnet_widese_b0_pyt_amp/versions/20.12.0/files/nvidia_efficientnet-widese-b0_210412.pth",
         "top-1 77.84 % AMP / 77.84 % TF32 (seed 003)"),
    _ngc("widese-b4", "efficientnet_widese_b4_pyt_amp/versions/20.12.0/files/nvidia_efficientnet-widese-b4_210412.pth",
         "top-1 83.10 % AMP / 83.13 % TF32 (seed 003)"),
    _ngc("quant-b0", "efficientnet_b0_pyt_qat_ckpt_fp32/versions/21.03.0/files/nvidia-efficientnet-quant-b0-130421.pth",
         "QAT top-1 77.12 % (seed 003; 0.51 below FP32)"),
    _ngc("quant-b4", "efficientnet_b4_pyt_qat_ckpt_fp32/versions/21.03.0/files/nvidia-efficientnet-quant-b4-130421.pth",
         "QAT top-1 82.54 % (seed 003; 0.44 below FP32)"),
    *(_keras(f"b{i}") for i in range(8)),
    Weights("torchvision-maskrcnn-resnet50-fpn-coco", f"{_TORCH}/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
            ("mask-rcnn-torchvision", "mask-rcnn", "mask-rcnn-r50-fpn", "mask-rcnn-finetune"), "torchvision-pth",
            "COCO 2017 (91 ids)",
            91, "box AP 37.9 / mask AP 34.6 (torchvision model card)", "BSD-3-Clause (torchvision)",
            sha256="bf2d0c1e", config={"task.preset": "torchvision"}),
    Weights("torchvision-resnet50", f"{_TORCH}/resnet50-0676ba61.pth",
            ("mask-rcnn", "mask-rcnn-r50-fpn", "mask-rcnn-torchvision"), "torchvision-pth", "ImageNet-1k", 1000,
            "top-1 76.13 % (torchvision IMAGENET1K_V1)", "BSD-3-Clause (torchvision)", slot="backbone",
            sha256="0676ba61", config={"task.model.backbone.stride_in_1x1": False,  # ResNet v1.5, torch's BN eps
                                       "task.model.backbone.bn_epsilon": 1e-5, "task.model.backbone.padding": "symmetric"}),
)}

#: the weights a bare ``--pretrained`` takes for each model (models without an entry have none).
DEFAULTS: Dict[str, str] = {
    **{f"efficientnet-{v}": f"nvidia-efficientnet-{v}" for v in ("b0", "b4", "widese-b0", "widese-b4",
                                                                  "quant-b0", "quant-b4")},
    **{f"efficientnet-b{i}": f"keras-efficientnet-b{i}" for i in (1, 2, 3, 5, 6, 7)},
    **{m: "torchvision-maskrcnn-resnet50-fpn-coco" for m in ("mask-rcnn", "mask-rcnn-r50-fpn", "mask-rcnn-torchvision",
                                                            "mask-rcnn-finetune")},
}
DEFAULT = "default"  # ``--pretrained`` without a name
PUBLISHERS = ("nvidia", "keras", "torchvision", "maskrcnn")  # how names start (a mistyped one is still a name)


def canonical(name: str) -> str:
    """``maskrcnn_resnet50_fpn_coco`` -> ``torchvision-maskrcnn-resnet50-fpn-coco``; names as they are otherwise."""
    key = name.strip().lower().replace("_", "-")
    if key in WEIGHTS:
        return key
    matches = [n for n in WEIGHTS if n.endswith("-" + key)]
    return matches[0] if len(matches) == 1 else key


def is_name(text: str) -> bool:
    """True when ``text`` names an entry (or its alias)."""
    return canonical(text) in WEIGHTS


def get(name: str) -> Weights:
    """The entry ``name`` (aliases accepted).

    Raises:
      SystemExit: unknown name (one line listing the names).
    """
    key = canonical(name)
    if key not in WEIGHTS:
        raise SystemExit(f"error: unknown weights {name!r}; `python main.py weights list` shows them: "
                         f"{', '.join(WEIGHTS)}")
    return WEIGHTS[key]


def for_model(model: str, name: str = DEFAULT) -> Weights:
    """The entry ``--pretrained [name]`` loads into ``model``.

    Raises:
      SystemExit: no published weights for ``model``, or ``name`` does not fit it (one line).
    """
    if name == DEFAULT:
        if model not in DEFAULTS:
            fitting = [w.name for w in WEIGHTS.values() if model in w.fits]
            raise SystemExit(f"error: no published weights for {model}" +
                             (f"; pass one of: --pretrained {', '.join(fitting)}" if fitting else
                              ": train it, or pass --pretrained-from-file FILE"))
        return WEIGHTS[DEFAULTS[model]]
    entry = get(name)
    if model not in entry.fits:
        raise SystemExit(f"error: --pretrained {entry.name} fits {', '.join(entry.fits)}, not {model}")
    return entry


def table() -> str:
    """``main.py weights list``: one row per entry (name, fits, format, dataset, metric, licence, URL)."""
    rows = [("NAME", "FITS (first: its recipe)", "FORMAT", "DATA", "PUBLISHED", "LICENCE")]
    rows += [(w.name + (" (backbone)" if w.slot == "backbone" else ""), ", ".join(w.fits), w.format, w.dataset,
              w.metric, w.licence) for w in WEIGHTS.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5] for r in rows]
    defaults = ", ".join(f"{m} -> {w}" for m, w in DEFAULTS.items())
    return "\n".join(lines) + f"\n\n--pretrained (no name): {defaults}\n"
