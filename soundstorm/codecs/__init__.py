"""Neural audio codecs behind one interface (soundstorm.codecs.base.Codec).

Specs name a codec as `KIND:ARGUMENT`:

    soundstream:models/codec?num_quantizers=4        our SoundStream (soundstream/)
    encodec:facebook/encodec_24khz?bandwidth=6.0     EnCodec through transformers (hf.py)
    dac:models/dac_16khz?num_quantizers=8            DAC through transformers
    mimi:kyutai/mimi?num_quantizers=8                Mimi through transformers
    python:my_package.codecs:make_codec              any factory returning a Codec

`check_codec_matches` is the check wherever a codec meets a SoundStorm model (and its cache).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from soundstorm.codecs.base import Codec, LevelPrefix, bitrate_kbps
from soundstorm.plugins import resolve_spec

# Kinds of codec spec -> loader of the argument. `python:module:factory` is always available.
CODEC_KINDS: dict[str, Callable[[str], Codec]] = {}


def _transformers_loader(kind: str) -> Callable[[str], Codec]:
    # Imported on use: transformers takes seconds to import and only these kinds need it.
    def load(argument: str) -> Codec:
        from soundstorm.codecs.hf import load_transformers_codec

        return load_transformers_codec(kind, argument)

    return load


for _kind in ("encodec", "dac", "mimi"):
    CODEC_KINDS[_kind] = _transformers_loader(_kind)


def _soundstream_loader(argument: str) -> Codec:
    """Our SoundStream: `soundstream:PATH` or `soundstream:PATH?num_quantizers=Q`."""
    from soundstorm.codecs.soundstream.codec import load_soundstream_codec  # imported on use, like the others

    return load_soundstream_codec(argument)


CODEC_KINDS["soundstream"] = _soundstream_loader


def load_codec(spec: str) -> Codec:
    """The codec a spec names, e.g. `encodec:facebook/encodec_24khz?num_quantizers=8` or
    `python:my_package.codecs:make_codec`."""
    return resolve_spec(spec, CODEC_KINDS, "codec", Codec)


class AcousticModelConfig(Protocol):
    """What a model generating codec tokens declares about them (SoundStormConfig has it)."""

    codebook_size: int
    num_quantizers: int


def check_codec_matches(
    codec: Codec, model_config: AcousticModelConfig, cache_codec: Mapping[str, Any] | None = None
) -> None:
    """Refuse, naming the field, a codec whose tokens the model cannot generate or read.

    Args:
        codec: the codec that will encode prompts for, or decode the output of, the model.
        model_config: e.g. a SoundStormConfig; its codebook_size and num_quantizers must equal
            the codec's (choose fewer codec levels with `?num_quantizers=N` in the spec, or
            `codec.with_num_quantizers(N)`).
        cache_codec: the description of the codec a token cache was built with
            (`TokenCache.codec`), when the model was trained on one: sample and frame rates and
            codebook size must agree with `codec` (its levels may be more, a prefix is used).

    Raises:
        ValueError: naming the field that differs and both values.
    """
    if codec.codebook_size != model_config.codebook_size:
        raise ValueError(
            f"codebook_size differs: the model has codebook_size={model_config.codebook_size}, "
            f"the codec {codec.name} has {codec.codebook_size}: they were not made for each other"
        )
    if codec.num_quantizers != model_config.num_quantizers:
        hint = (
            f": load it with fewer levels, e.g. the spec suffix ?num_quantizers={model_config.num_quantizers}"
            if codec.num_quantizers > model_config.num_quantizers
            else ""
        )
        raise ValueError(
            f"num_quantizers differs: the model generates num_quantizers={model_config.num_quantizers} levels, "
            f"the codec {codec.name} has {codec.num_quantizers}{hint}"
        )
    if cache_codec is not None:
        for field in ("sample_rate", "frame_rate", "codebook_size"):
            if cache_codec.get(field) != getattr(codec, field):
                raise ValueError(
                    f"{field} differs: the token cache was built with a codec of {field}="
                    f"{cache_codec.get(field)!r} ({cache_codec.get('name')}), the codec {codec.name} "
                    f"has {getattr(codec, field)!r}"
                )
        if cache_codec.get("num_quantizers", 0) < codec.num_quantizers:
            raise ValueError(
                f"num_quantizers differs: the token cache holds {cache_codec.get('num_quantizers')} levels, "
                f"the codec {codec.name} has {codec.num_quantizers}"
            )


__all__ = [
    "CODEC_KINDS",
    "AcousticModelConfig",
    "Codec",
    "LevelPrefix",
    "bitrate_kbps",
    "check_codec_matches",
    "load_codec",
]
