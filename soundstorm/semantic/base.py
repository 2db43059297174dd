"""The semantic tokenizer interface: audio -> discrete tokens that carry content, not voice.

SoundStorm is conditioned on these (the paper uses w2v-BERT k-means tokens at 25 Hz). This
project ships its own offline tokenizer and wraps HuBERT + k-means; users may bring their own.

Notation: B batch, N samples, S semantic tokens, V vocabulary size.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor


class SemanticTokenizer(ABC):
    name: str  # identifies the tokenizer and its weights in cache metadata
    sample_rate: int  # Hz of the audio it reads
    rate: float  # tokens per second
    vocab_size: int  # V, token ids are in [0, V)

    @abstractmethod
    def tokenize(self, wav: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """float wav [B, 1, N] at sample_rate, lengths [B] in samples (default: all N) ->
        int64 tokens [B, S] in [0, V) and token_lengths [B]; tokens past a length are padding."""

    def num_tokens(self, num_samples: int) -> int:
        """S for an input of N samples."""
        return math.ceil(num_samples * self.rate / self.sample_rate)

    def token_lengths(self, lengths: Tensor) -> Tensor:
        """lengths [B] in samples -> [B] in tokens."""
        return torch.tensor([self.num_tokens(int(n)) for n in lengths], dtype=torch.long)

    def describe(self) -> dict[str, Any]:
        """What a token cache records, and checks, about the tokenizer that made it."""
        return {"name": self.name, "sample_rate": self.sample_rate, "rate": self.rate, "vocab_size": self.vocab_size}
