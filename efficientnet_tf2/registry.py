"""Name -> builder registry of the EfficientNet variants.

``main.py`` and the scripts select models by name only; a new variant is one
``register`` call and is picked up by the parametrised tests. Quantized
variants (``efficientnet-quant-*``) share the float architecture; they are
registered with ``quantized=True`` and wrapped for QAT after their float
weights are loaded (:mod:`efficientnet_tf2.qat`).
"""
from __future__ import annotations

from typing import Callable, Dict

from efficientnet_tf2.config import EfficientNetConfig, variant_config

_REGISTRY: Dict[str, Callable[..., EfficientNetConfig]] = {}
_QUANTIZED = set()


def register(name: str, factory: Callable[..., EfficientNetConfig], quantized: bool = False) -> None:
    """Registers ``factory(**overrides) -> EfficientNetConfig`` under ``name``.

    ``quantized`` marks a quantization-aware-training variant of the architecture.
    """
    if name in _REGISTRY:
        raise ValueError(f"Model {name!r} is already registered")
    _REGISTRY[name] = factory
    if quantized:
        _QUANTIZED.add(name)


def is_quantized(name: str) -> bool:
    """True for the QAT variants (``efficientnet-quant-*``)."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}. Available: {', '.join(list_models())}")
    return name in _QUANTIZED


def list_models():
    """Sorted names of all registered EfficientNet variants."""
    return sorted(_REGISTRY)


def get_config(name: str, **overrides) -> EfficientNetConfig:
    """Config of the registered variant ``name`` with ``overrides`` applied."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}. Available: {', '.join(list_models())}")
    return _REGISTRY[name](**overrides)


register("efficientnet-b0", lambda **kw: variant_config("b0", **kw))
register("efficientnet-b4", lambda **kw: variant_config("b4", **kw))
register("efficientnet-widese-b0", lambda **kw: variant_config("b0", wide_se=True, **kw))
register("efficientnet-widese-b4", lambda **kw: variant_config("b4", wide_se=True, **kw))
register("efficientnet-quant-b0", lambda **kw: variant_config("b0", **kw), quantized=True)
register("efficientnet-quant-b4", lambda **kw: variant_config("b4", **kw), quantized=True)
