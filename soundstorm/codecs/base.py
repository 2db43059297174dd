"""The codec interface: what SoundStorm needs from a neural audio codec with residual VQ.

A codec turns audio into Q levels of K-code tokens at `frame_rate` frames per second and back.
Implementations wrap a model (our SoundStream, EnCodec, DAC, Mimi, or a user's own) in a few
lines; everything downstream (token caches, training, TTS) sees only this interface.

Notation: B batch, N samples, T frames, Q levels, K codes per level.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor


class Codec(ABC):
    name: str  # identifies the codec and its weights in cache metadata, e.g. "soundstream:models/codec"
    sample_rate: int  # Hz of the audio it encodes and decodes
    frame_rate: float  # frames per second of its tokens
    num_quantizers: int  # Q, the RVQ levels it emits
    codebook_size: int  # K, codes per level

    @abstractmethod
    def encode(self, wav: Tensor) -> Tensor:
        """float wav [B, 1, N] at sample_rate -> int64 codes [B, T, Q] in [0, K)."""

    @abstractmethod
    def decode(self, codes: Tensor) -> Tensor:
        """int64 codes [B, T, Q] -> float wav [B, 1, N] at sample_rate."""

    def num_frames(self, num_samples: int) -> int:
        """T for an input of N samples (codecs pad the last frame)."""
        return math.ceil(num_samples * self.frame_rate / self.sample_rate)

    def describe(self) -> dict[str, Any]:
        """What a token cache records, and checks, about the codec that made it."""
        return {
            "name": self.name,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "num_quantizers": self.num_quantizers,
            "codebook_size": self.codebook_size,
        }
