"""Name -> builder registry of the EfficientNet variants.

``main.py`` and the scripts select models by name only; a new variant is one
``register`` call and is picked up by the parametrised tests.
"""
from __future__ import annotations

from typing import Callable, Dict

from efficientnet_tf2.config import EfficientNetConfig, variant_config

_REGISTRY: Dict[str, Callable[..., EfficientNetConfig]] = {}


def register(name: str, factory: Callable[..., EfficientNetConfig]) -> None:
    """Registers ``factory(**overrides) -> EfficientNetConfig`` under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"Model {name!r} is already registered")
    _REGISTRY[name] = factory


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
