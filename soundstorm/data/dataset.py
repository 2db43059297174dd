"""Training examples from a token cache: random crops of up to `max_frames` frames.

The paper trains on random windows of up to 30 s. A crop starts on a semantic token boundary
(a multiple of the rate ratio r), so that its semantic tokens are exactly those of its frames.
Crops are deterministic: example i in epoch e always gets the same window for a given seed,
whatever the worker or process that loads it; call `set_epoch` before each epoch.

Notation: T frames, Q levels, S = ceil(T / r) semantic tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from soundstorm.data.cache import TokenCache


@dataclass
class Example:
    codes: Tensor  # int64 [T, Q]
    semantic: Tensor | None  # int64 [S], S = ceil(T / r)
    index: int  # position in the cache


class TokenDataset(Dataset[Example]):
    def __init__(
        self,
        cache: TokenCache,
        *,
        split: str | None = None,
        num_quantizers: int | None = None,
        max_frames: int | None = None,
        random_crop: bool = True,
        seed: int = 0,
    ) -> None:
        """
        Args:
            split: only the cache's items of this split (all when None).
            num_quantizers: keep the first Q levels (default: all the cache has).
            max_frames: crop longer utterances to this many frames (None: never crop).
            random_crop: a random window per epoch; False takes the first max_frames frames.
        """
        self.cache = cache
        self.indices = cache.indices(split)
        if not self.indices:
            raise ValueError(f"the token cache at {cache.root} has no items of split {split!r}")
        available = cache.codec["num_quantizers"]
        self.num_quantizers = available if num_quantizers is None else num_quantizers
        if not 1 <= self.num_quantizers <= available:
            raise ValueError(f"num_quantizers must be in [1, {available}] for this cache, got {num_quantizers}")
        self.ratio = cache.ratio or 1
        if max_frames is not None and (max_frames < self.ratio or max_frames % self.ratio):
            raise ValueError(f"max_frames must be a positive multiple of the rate ratio {self.ratio}, got {max_frames}")
        self.max_frames = max_frames
        self.random_crop = random_crop
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def lengths(self) -> np.ndarray:
        """int64 [N]: frames of each example after cropping (for length bucketing)."""
        frames = self.cache.num_frames[self.indices]
        return frames if self.max_frames is None else np.minimum(frames, self.max_frames)

    def crop_start(self, position: int, num_frames: int) -> int:
        """First frame of example `position`'s window this epoch (a multiple of the ratio)."""
        if self.max_frames is None or num_frames <= self.max_frames or not self.random_crop:
            return 0
        last_token_start = (num_frames - self.max_frames) // self.ratio  # highest start, in tokens
        generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, position)) % (2**63))
        return int(torch.randint(last_token_start + 1, (), generator=generator)) * self.ratio

    def __getitem__(self, position: int) -> Example:
        index = self.indices[position]
        codes = self.cache.codes(index)  # uint16 [T_full, Q_cache], memory-mapped
        start = self.crop_start(position, len(codes))
        stop = len(codes) if self.max_frames is None else min(len(codes), start + self.max_frames)
        window = torch.from_numpy(np.asarray(codes[start:stop, : self.num_quantizers], dtype=np.int64))
        semantic = self.cache.semantic(index)
        if semantic is not None:
            first = start // self.ratio
            tokens = semantic[first : first + math.ceil((stop - start) / self.ratio)]
            semantic = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
        return Example(codes=window, semantic=semantic, index=index)
