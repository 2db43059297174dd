"""Padding collation: a list of examples -> one batch with lengths.

Padded frames hold 0 and padded semantic tokens 0; SoundStorm ignores both, given `lengths`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from soundstorm.data.dataset import Example


@dataclass
class Batch:
    codes: Tensor  # int64 [B, T, Q], T = the longest example
    semantic: Tensor | None  # int64 [B, S], S = ceil(T / r)
    lengths: Tensor  # int64 [B], frames of each example
    indices: Tensor  # int64 [B], cache positions (to find ids, speakers, texts)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.codes.to(device),
            None if self.semantic is None else self.semantic.to(device),
            self.lengths.to(device),
            self.indices,
        )


def pad_collate(examples: list[Example]) -> Batch:
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    lengths = torch.tensor([len(e.codes) for e in examples])
    B, T, Q = len(examples), int(lengths.max()), examples[0].codes.shape[1]
    codes = torch.zeros(B, T, Q, dtype=torch.long)
    for b, example in enumerate(examples):
        codes[b, : len(example.codes)] = example.codes
    semantic = None
    if examples[0].semantic is not None:
        S = max(len(e.semantic) for e in examples)  # type: ignore[arg-type]
        semantic = torch.zeros(B, S, dtype=torch.long)
        for b, example in enumerate(examples):
            semantic[b, : len(example.semantic)] = example.semantic  # type: ignore[arg-type]
    indices = torch.tensor([e.index for e in examples])
    return Batch(codes=codes, semantic=semantic, lengths=lengths, indices=indices)
