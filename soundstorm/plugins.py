"""Spec strings that name a component: `KIND:ARGUMENT`, e.g. `soundstream:models/codec`.

Each component family (codecs, semantic tokenizers) keeps a registry of kinds; the kind
`python` is common to all and lets users plug in their own: `python:my_package.module:make`
imports `make` and calls it with no arguments.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def import_object(path: str) -> Any:
    """`package.module:attribute` -> the attribute."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected 'package.module:attribute', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name!r} for {path!r}: {error}") from error
    try:
        return getattr(module, attribute)
    except AttributeError as error:
        raise ValueError(f"{module_name!r} has no attribute {attribute!r}") from error


def resolve_spec(spec: str, registry: dict[str, Callable[[str], T]], family: str, base: type) -> T:
    """Build the component that `spec` names, checked to be an instance of `base`."""
    kind, separator, argument = spec.partition(":")
    if not separator:
        raise ValueError(f"a {family} spec is KIND:ARGUMENT, got {spec!r}; kinds: {sorted(registry) + ['python']}")
    if kind == "python":
        component = import_object(argument)()
    elif kind in registry:
        component = registry[kind](argument)
    else:
        raise ValueError(f"unknown {family} kind {kind!r} in {spec!r}; kinds: {sorted(registry) + ['python']}")
    if not isinstance(component, base):
        raise ValueError(f"{spec!r} made a {type(component).__name__}, not a {base.__name__}")
    return component
