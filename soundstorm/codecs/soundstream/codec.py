"""Our SoundStream behind the Codec interface: `load_codec("soundstream:PATH")`.

    codec = load_codec("soundstream:models/codec")                     # all levels
    codec = load_codec("soundstream:models/codec?num_quantizers=4")    # the first 4 (bitrate / 2)
    codes = codec.encode(wav)      # [B, 1, N] float -> [B, T, Q] int64
    audio = codec.decode(codes)    # [B, T, Q] int64 -> [B, 1, T * hop] float

The codec's `name` is the spec that loads it again, so a token cache's metadata names exactly
the weights and levels that made it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from soundstorm.checkpoint import weights_digest
from soundstorm.codecs.base import Codec
from soundstorm.codecs.soundstream.adapt import DecoderAdaptation, adapt_decoder
from soundstorm.codecs.soundstream.model import SoundStream

_OPTION = "num_quantizers"


def _digest(model: SoundStream) -> str:
    """weights_digest of the encoder and the codebooks. The decoder is left out: it changes no
    token, so a decoder-only fine-tune (recipes/demo/codec-gan.toml) keeps every token cache made
    with the codec."""
    return weights_digest(model, skip=("decoder.",))


class SoundStreamCodec(Codec):
    def __init__(
        self,
        model: SoundStream,
        *,
        name: str,
        num_quantizers: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        """
        Args:
            model: a trained SoundStream (put in eval mode and on `device`).
            name: what identifies these weights, e.g. "soundstream:models/codec".
            num_quantizers: emit and decode only the first q levels (lower bitrate); default all.
        """
        config = model.config
        num_quantizers = config.num_quantizers if num_quantizers is None else num_quantizers
        valid = isinstance(num_quantizers, int) and not isinstance(num_quantizers, bool)
        if not valid or not 1 <= num_quantizers <= config.num_quantizers:
            raise ValueError(
                f"num_quantizers must be an integer in [1, {config.num_quantizers}] for this SoundStream, "
                f"got {num_quantizers!r}"
            )
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.name = name
        self.sample_rate = config.sample_rate
        self.frame_rate = config.frame_rate
        self.num_quantizers = num_quantizers
        self.codebook_size = config.codebook_size
        self.encoder_digest = _digest(model)
        self.semantic_vocab_size = config.semantic_vocab_size
        self.semantic_rate_ratio = config.semantic_rate_ratio
        self.reads_reference = bool(config.reference_mels)
        # The voice reference's spectrum float32 [1, M] this view decodes with (with_reference), or None.
        self.reference: Tensor | None = None

    def describe(self) -> dict[str, Any]:
        """The Codec fields, and a digest of the weights that make tokens: a folder retrained in
        place keeps its name, and a token cache must not take its new tokens for the old ones."""
        return {**super().describe(), "encoder_weights": self.encoder_digest}

    @classmethod
    def from_pretrained(
        cls, path: str | Path, num_quantizers: int | None = None, device: str | torch.device = "cpu"
    ) -> SoundStreamCodec:
        """The SoundStream saved at `path` (SoundStream.save_pretrained)."""
        model = SoundStream.from_pretrained(path, map_location=device)
        name = f"soundstream:{path}"
        if num_quantizers is not None and num_quantizers != model.config.num_quantizers:
            name += f"?{_OPTION}={num_quantizers}"
        return cls(model, name=name, num_quantizers=num_quantizers, device=device)

    def encode(self, wav: Tensor) -> Tensor:
        """float wav [B, 1, N] at sample_rate -> int64 codes [B, T, Q] in [0, K), T = ceil(N / hop)."""
        self.check_wav(wav)
        with torch.inference_mode():
            codes = self.model.encode(wav.to(self.device, torch.float32), self.num_quantizers)
        return codes.cpu()

    def decode(self, codes: Tensor) -> Tensor:
        """int64 codes [B, T, Q'] in [0, K), any 1 <= Q' <= Q -> float wav [B, 1, T * hop]."""
        self.check_codes(codes)
        with torch.inference_mode():
            wav = self.model.decode(codes.to(self.device), reference=self._reference(codes.shape[0]))
        return wav.float().cpu()

    decodes_expected = True

    def decode_expected(self, codes: Tensor, probs: Tensor) -> Tensor:
        """Soft decoding (Codec.decode_expected): int64 codes [B, T, c] and float probs
        [B, T, L - c, K] -> float wav [B, 1, T * hop]."""
        self.check_expected(codes, probs)
        with torch.inference_mode():
            wav = self.model.decode_expected(codes.to(self.device), probs.to(self.device, torch.float32),
                                             reference=self._reference(codes.shape[0]))
        return wav.float().cpu()

    def decode_with_semantic(self, codes: Tensor, semantic: Tensor, probs: Tensor | None = None) -> Tensor:
        """Codec.decode_with_semantic: a decoder trained with semantic tokens
        (recipes/demo/codec-semantic.toml) reads SoundStorm's conditioning beside its codes."""
        if not self.semantic_vocab_size:
            return super().decode_with_semantic(codes, semantic, probs)
        self.check_codes(codes) if probs is None else self.check_expected(codes, probs)
        with torch.inference_mode():
            semantic, reference = semantic.to(self.device), self._reference(codes.shape[0])
            wav = (self.model.decode(codes.to(self.device), semantic, reference) if probs is None else
                   self.model.decode_expected(codes.to(self.device), probs.to(self.device, torch.float32), semantic,
                                              reference))
        return wav.float().cpu()

    def with_reference(self, wav: Tensor) -> SoundStreamCodec:
        """Codec.with_reference: a view of the same weights whose decoder reads wav [1, 1, N]'s
        long-term spectrum (vocos.reference_spectrum) beside every clip it decodes."""
        if not self.reads_reference:
            return super().with_reference(wav)
        self.check_wav(wav)
        if wav.shape[0] != 1:
            raise ValueError(f"a voice reference is one recording [1, 1, N], got a batch of {wav.shape[0]}")
        with torch.inference_mode():
            spectrum = self.model.reference_spectrum(wav.to(self.device, torch.float32))  # [1, M]
        bound = copy.copy(self)
        bound.reference = spectrum.clone()
        return bound

    def _reference(self, batch_size: int) -> Tensor | None:
        """The bound voice reference for a batch, [B, M], or None."""
        return None if self.reference is None else self.reference.expand(batch_size, -1)

    def semantic_features(self) -> Tensor | None:
        """Codec.semantic_features: the Vocos decoder's token descriptions (semantic_feature_dim)."""
        if not self.model.config.semantic_feature_dim:
            return None
        return self.model.decoder.semantic_features[:-1].float().cpu()  # the null token's zeros left out

    def with_num_quantizers(self, num_quantizers: int) -> SoundStreamCodec:
        """The same weights emitting only the first `num_quantizers` levels (the encoder then
        skips the other levels' nearest-code searches). Its name is the spec that loads it."""
        if num_quantizers == self.num_quantizers:
            return self
        base = self.name.partition("?")[0]
        name = base if num_quantizers == self.model.config.num_quantizers else f"{base}?{_OPTION}={num_quantizers}"
        prefix = SoundStreamCodec(self.model, name=name, num_quantizers=num_quantizers, device=self.device)
        prefix.reference = self.reference
        return prefix


    def adapted_to(self, audio: Tensor | Sequence[Tensor], options: DecoderAdaptation,
                   semantic: Sequence[Tensor] | None = None) -> SoundStreamCodec:
        """The same codec with a copy of its decoder fine-tuned on one voice's audio, a clip
        [1, 1, N] or several (adapt.py): the same tokens, decoded nearer that voice; a decoder that
        reads semantic tokens learns from each clip's own (int64 [S_i]) where they are given.
        Callable under inference mode."""
        clips = [audio] if isinstance(audio, Tensor) else list(audio)
        tokens = None if semantic is None else [t.clone() for t in semantic]
        reference = None if self.reference is None else self.reference.clone()
        with torch.inference_mode(False), torch.enable_grad():
            model = adapt_decoder(self.model, [clip.clone() for clip in clips], options, tokens, reference)
        adapted = SoundStreamCodec(model, name=self.name, num_quantizers=self.num_quantizers, device=self.device)
        adapted.reference = reference  # it learned the voice with this reference beside it
        return adapted


def load_soundstream_codec(argument: str) -> SoundStreamCodec:
    """The `soundstream` kind of codec spec: `PATH` or `PATH?num_quantizers=Q`."""
    path, separator, option = argument.partition("?")
    num_quantizers = None
    if separator:
        key, equals, value = option.partition("=")
        if key != _OPTION or not equals or not value.isdigit():
            raise ValueError(
                f"a soundstream codec spec is 'soundstream:PATH' or 'soundstream:PATH?{_OPTION}=Q', got "
                f"'soundstream:{argument}'"
            )
        num_quantizers = int(value)
    if not path:
        raise ValueError(
            "a soundstream codec spec needs a path: 'soundstream:PATH' (a SoundStream.save_pretrained folder)"
        )
    return SoundStreamCodec.from_pretrained(path, num_quantizers=num_quantizers)
