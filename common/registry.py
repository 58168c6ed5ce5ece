"""The one registry: model name -> model family.

A family (:class:`common.family.Family`) registers every model name it answers to;
``main.py``, the scripts and the benchmark command look names up here only. Families
are imported lazily (``--help`` stays fast, a family with missing optional packages
does not break the others); tests and plug-ins may :func:`register` more.
"""
from __future__ import annotations

import importlib
import logging
from typing import Dict, List

_log = logging.getLogger(__name__)

#: modules whose import registers the built-in families.
BUILTIN_FAMILIES = ("efficientnet_tf2.family", "mrcnn_tf2.family")

_FAMILIES: Dict[str, object] = {}
_loaded = False


def register(family) -> object:
    """Registers ``family`` under each of its ``models`` and ``benchmark_references``."""
    for name in tuple(family.models) + tuple(family.benchmark_references):
        owner = _FAMILIES.get(name)
        if owner is not None and owner is not family:
            raise ValueError(f"Model {name!r} is already registered by the {owner.name} family")
        _FAMILIES[name] = family
    return family


def unregister(family) -> None:
    """Removes every name of ``family`` (tests)."""
    for name in [n for n, f in _FAMILIES.items() if f is family]:
        del _FAMILIES[name]


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_FAMILIES:
        try:
            importlib.import_module(module)
        except ImportError as err:  # an optional family whose packages are missing
            _log.warning("model family %s unavailable: %s", module, err)


def list_models(include_references: bool = False) -> List[str]:
    """Sorted model names (``include_references``: also benchmark-only reference models)."""
    _load_builtins()
    return sorted(n for n, f in _FAMILIES.items() if include_references or n in f.models)


def get_family(name: str, benchmark: bool = False):
    """The family of model ``name``.

    Raises:
      SystemExit: unknown name (one line listing the known ones).
    """
    _load_builtins()
    family = _FAMILIES.get(name)
    if family is None or (name not in family.models and not benchmark):
        known = list_models(include_references=benchmark)
        hint = " (a benchmark reference: use it with `main.py benchmark`)" if family is not None else ""
        raise SystemExit(f"error: unknown --model {name!r}{hint}. Available: {', '.join(known)}")
    return family
