"""Semantic tokenizers behind one interface (soundstorm.semantic.base.SemanticTokenizer)."""

from __future__ import annotations

from collections.abc import Callable

from soundstorm.plugins import resolve_spec
from soundstorm.semantic.base import SemanticTokenizer

# Kinds of tokenizer spec -> loader of the argument. `python:module:factory` is always available.
SEMANTIC_KINDS: dict[str, Callable[[str], SemanticTokenizer]] = {}


def load_semantic_tokenizer(spec: str) -> SemanticTokenizer:
    """The semantic tokenizer a spec names, e.g. `python:my_package.tokens:make_tokenizer`."""
    return resolve_spec(spec, SEMANTIC_KINDS, "semantic tokenizer", SemanticTokenizer)


__all__ = ["SEMANTIC_KINDS", "SemanticTokenizer", "load_semantic_tokenizer"]
