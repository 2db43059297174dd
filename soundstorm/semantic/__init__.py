"""Semantic tokenizers behind one interface (soundstorm.semantic.base.SemanticTokenizer).

Specs name a tokenizer as `KIND:ARGUMENT`:

    content:models/semantic        our phone-supervised content encoder + k-means (content.py)
    mfcc:models/mfcc-km512         k-means of MFCCs, the HuBERT-iteration-1 baseline
    hubert:models/hubert-km500     k-means of a HuBERT / wav2vec 2.0 / WavLM layer (hubert.py)
    python:my_package.tokens:make  any factory returning a SemanticTokenizer

The first three are k-means tokenizer folders (kmeans_tokenizer.py), written by
`soundstorm semantic kmeans`.
"""

from __future__ import annotations

from collections.abc import Callable

from soundstorm.plugins import resolve_spec
from soundstorm.semantic.base import SemanticTokenizer

# Kinds of tokenizer spec -> loader of the argument. `python:module:factory` is always available.
SEMANTIC_KINDS: dict[str, Callable[[str], SemanticTokenizer]] = {}


def _kmeans_loader(kind: str) -> Callable[[str], SemanticTokenizer]:
    def load(argument: str) -> SemanticTokenizer:
        from soundstorm.semantic.kmeans_tokenizer import load_kmeans_tokenizer

        return load_kmeans_tokenizer(argument, kind=kind)

    return load


for _kind in ("content", "mfcc", "hubert"):
    SEMANTIC_KINDS[_kind] = _kmeans_loader(_kind)


def load_semantic_tokenizer(spec: str) -> SemanticTokenizer:
    """The semantic tokenizer a spec names, e.g. `content:models/semantic` or
    `python:my_package.tokens:make_tokenizer`."""
    return resolve_spec(spec, SEMANTIC_KINDS, "semantic tokenizer", SemanticTokenizer)


__all__ = ["SEMANTIC_KINDS", "SemanticTokenizer", "load_semantic_tokenizer"]
