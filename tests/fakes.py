"""Stand-ins that satisfy the codec and semantic-tokenizer interfaces, for data-layer tests.

Deterministic functions of the audio, so a token cache built from them can be checked exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from soundstorm.codecs import Codec
from soundstorm.semantic import SemanticTokenizer


def _frame_features(wav: Tensor, hop: int) -> Tensor:
    """wav [B, 1, N] -> mean absolute amplitude per hop [B, ceil(N / hop)]."""
    N = wav.shape[-1]
    padded = torch.nn.functional.pad(wav[:, 0], (0, -N % hop))
    return padded.abs().view(wav.shape[0], -1, hop).mean(dim=-1)


class FakeCodec(Codec):
    def __init__(self, sample_rate: int = 16000, frame_rate: float = 50.0, num_quantizers: int = 4, codebook_size: int = 1024) -> None:
        self.name = "fake-codec"
        self.sample_rate, self.frame_rate = sample_rate, frame_rate
        self.num_quantizers, self.codebook_size = num_quantizers, codebook_size

    @property
    def hop(self) -> int:
        return int(self.sample_rate / self.frame_rate)

    def encode(self, wav: Tensor) -> Tensor:
        """Residual quantization of each frame's mean amplitude: level 1 is coarse and follows
        the envelope (learnable), finer levels hold ever finer remainders."""
        residual = _frame_features(wav, self.hop).double() * 2 * self.codebook_size  # [B, T], amplitude <= 0.5
        levels = []
        for _ in range(self.num_quantizers):
            code = residual.floor().clamp(0, self.codebook_size - 1)
            levels.append(code.long())
            residual = (residual - code) * self.codebook_size
        return torch.stack(levels, dim=-1)  # [B, T, Q]

    def decode(self, codes: Tensor) -> Tensor:
        return torch.zeros(codes.shape[0], 1, codes.shape[1] * self.hop)


class FakeSemantic(SemanticTokenizer):
    def __init__(self, sample_rate: int = 16000, rate: float = 25.0, vocab_size: int = 100) -> None:
        self.name = "fake-semantic"
        self.sample_rate, self.rate, self.vocab_size = sample_rate, rate, vocab_size

    def tokenize(self, wav: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        energy = _frame_features(wav, int(self.sample_rate / self.rate))  # [B, S]
        lengths = torch.full((wav.shape[0],), wav.shape[-1]) if lengths is None else lengths
        tokens = (energy * 2 * self.vocab_size).long().clamp(0, self.vocab_size - 1)
        return tokens, self.token_lengths(lengths)


def make_fake_codec() -> FakeCodec:
    """For the `python:fakes:make_fake_codec` spec."""
    return FakeCodec()


def make_fake_semantic() -> FakeSemantic:
    return FakeSemantic()
