"""The semantic tokenizer interface: audio -> discrete tokens that carry content, not voice.

SoundStorm is conditioned on these (the paper uses w2v-BERT k-means tokens at 25 Hz). This
project ships its own offline tokenizer and wraps HuBERT + k-means; users may bring their own.

Notation: B batch, N samples, S semantic tokens, V vocabulary size.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor


class SemanticTokenizer(ABC):
    name: str  # identifies the tokenizer and its weights in cache metadata
    sample_rate: int  # Hz of the audio it reads
    frame_rate: float  # tokens per second
    vocab_size: int  # V, token ids are in [0, V)

    @abstractmethod
    def encode(self, wav: Tensor) -> Tensor:
        """float wav [B, 1, N] at sample_rate -> int64 tokens [B, S] in [0, V)."""

    def num_tokens(self, num_samples: int) -> int:
        """S for an input of N samples."""
        return math.ceil(num_samples * self.frame_rate / self.sample_rate)

    def describe(self) -> dict[str, Any]:
        """What a token cache records, and checks, about the tokenizer that made it."""
        return {
            "name": self.name,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "vocab_size": self.vocab_size,
        }
