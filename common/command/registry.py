"""The one registry: model name -> complete experiment, and family name -> the family's hooks.

A name is a whole experiment (TF Model Garden's ``exp_factory``): :func:`register_experiment`
decorates a zero-argument function returning the complete :class:`common.command.config.Experiment` of that
name (architecture, data, optimisation, trainer). A family (:class:`common.command.family.Family`, one per
kind of task) supplies the hooks that run any experiment of its task; :func:`register` adds it by
name. ``main.py``, the scripts and the benchmark command look names up here only; nothing else
matches text in a model name.

Built-in families and their experiments are imported lazily (``--help`` stays fast, a family with
missing optional packages does not break the others); tests and plug-ins may register more.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
from typing import Callable, Dict, List, NamedTuple

_log = logging.getLogger(__name__)

#: modules whose import registers the built-in families and their experiments.
BUILTIN_FAMILIES = ("efficientnet_tf2.family", "mrcnn_tf2.family")


class Entry(NamedTuple):
    """A registered name: its family's name, the function building its experiment, and whether it
    is a benchmark-only reference (a peer implementation, not trained here)."""

    family: str
    build: Callable[[], object]
    reference: bool


_FAMILIES: Dict[str, object] = {}
_EXPERIMENTS: Dict[str, Entry] = {}
_loaded = False


def register(family) -> object:
    """Registers ``family`` (its hooks) under ``family.name``; returns it."""
    owner = _FAMILIES.get(family.name)
    if owner is not None and owner is not family:
        raise ValueError(f"A family named {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    return family


def register_experiment(name: str, family: str, reference: bool = False):
    """Decorator: ``fn() -> Experiment`` is the experiment of model ``name``, run by family ``family``.

    ``reference``: accepted by ``main.py benchmark`` only (e.g. a keras.applications peer).
    """
    def decorate(build: Callable[[], object]) -> Callable[[], object]:
        if name in _EXPERIMENTS and _EXPERIMENTS[name].build is not build:
            raise ValueError(f"Model {name!r} is already registered by the {_EXPERIMENTS[name].family} family")
        _EXPERIMENTS[name] = Entry(family, build, reference)
        return build

    return decorate


def unregister(family) -> None:
    """Removes ``family`` and every experiment it runs (tests)."""
    _FAMILIES.pop(family.name, None)
    for name in [n for n, e in _EXPERIMENTS.items() if e.family == family.name]:
        del _EXPERIMENTS[name]


def unregister_experiment(name: str) -> None:
    """Removes one experiment name (tests)."""
    _EXPERIMENTS.pop(name, None)


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
    return sorted(n for n, e in _EXPERIMENTS.items() if include_references or not e.reference)


def _entry(name: str, benchmark: bool) -> Entry:
    """The registration of ``name``; SystemExit (one line listing the known names) if there is none."""
    _load_builtins()
    entry = _EXPERIMENTS.get(name)
    if entry is None or (entry.reference and not benchmark):
        known = list_models(include_references=benchmark)
        hint = " (a benchmark reference: use it with `main.py benchmark`)" if entry is not None else ""
        raise SystemExit(f"error: unknown --model {name!r}{hint}. Available: {', '.join(known)}")
    return entry


def get_family(name: str, benchmark: bool = False):
    """The family (hooks) that runs model ``name``.

    Raises:
      SystemExit: unknown name (one line listing the known ones).
    """
    return _FAMILIES[_entry(name, benchmark).family]


def get_experiment(name: str, benchmark: bool = False):
    """A fresh copy of the complete experiment of model ``name`` (its ``model`` field is ``name``)."""
    experiment = _entry(name, benchmark).build()
    if experiment.model != name:
        experiment = dataclasses.replace(experiment, model=name)
    return experiment
