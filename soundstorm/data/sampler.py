"""Length-bucketed batches, shuffled per epoch, sharded across DDP processes.

Examples of similar length go together (little padding): the data set is shuffled, cut into
pools of `batch_size * bucket_batches` examples, each pool is sorted by length and cut into
batches, and the batches are shuffled. Batch j goes to rank j % world_size. Every rank gets the
same number of batches (DDP needs it); when the batch count does not divide evenly, the first
few batches are repeated on the ranks that are short, so every example is seen at least once
per epoch and at most (world_size - 1) batches are seen twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        bucket_batches: int = 50,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or bucket_batches < 1:
            raise ValueError("batch_size and bucket_batches must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.lengths = np.asarray(lengths)
        if len(self.lengths) == 0:
            raise ValueError("no examples to batch")
        self.batch_size = batch_size
        self.bucket_batches = bucket_batches
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Batches of `epoch`, skipping this rank's first `start_batch` (to resume mid-epoch)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def all_batches(self) -> list[list[int]]:
        """This epoch's batches, over all ranks, in order."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=generator).numpy() if self.shuffle else np.arange(n)
        pool = self.batch_size * self.bucket_batches
        batches: list[list[int]] = []
        for start in range(0, n, pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.all_batches()
        per_rank = -(-len(batches) // self.world_size)
        padded = [batches[i % len(batches)] for i in range(per_rank * self.world_size)]
        return iter(padded[self.rank :: self.world_size][self.start_batch :])

    def __len__(self) -> int:
        """This rank's batches left in the epoch."""
        return max(0, -(-len(self.all_batches()) // self.world_size) - self.start_batch)
