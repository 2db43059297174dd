"""Neural audio codecs behind one interface (soundstorm.codecs.base.Codec)."""

from __future__ import annotations

from collections.abc import Callable

from soundstorm.codecs.base import Codec
from soundstorm.plugins import resolve_spec

# Kinds of codec spec -> loader of the argument. `python:module:factory` is always available.
CODEC_KINDS: dict[str, Callable[[str], Codec]] = {}


def load_codec(spec: str) -> Codec:
    """The codec a spec names, e.g. `python:my_package.codecs:make_codec`."""
    return resolve_spec(spec, CODEC_KINDS, "codec", Codec)


__all__ = ["CODEC_KINDS", "Codec", "load_codec"]
