"""Batches from a token cache, for every task that trains on one (SoundStorm, the AR baseline).

Random crops of up to data.max_frames, bucketed by length, padded (soundstorm.data); the order
is a function of the recipe's seed and the epoch, so a resumed run continues it exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader

from soundstorm.data.cache import TokenCache
from soundstorm.data.collate import Batch, pad_collate
from soundstorm.data.dataset import TokenDataset
from soundstorm.data.sampler import BucketBatchSampler
from soundstorm.train.distributed import DistributedContext
from soundstorm.train.recipe import Recipe
from soundstorm.train.task import ignore_stop_signals


class TokenBatches:
    def __init__(self, recipe: Recipe, context: DistributedContext, cache: TokenCache, num_quantizers: int) -> None:
        self.recipe, self.context = recipe, context
        data = recipe.data
        self.train_set = TokenDataset(cache, split=data.train_split, num_quantizers=num_quantizers,
                                      max_frames=data.max_frames, seed=recipe.seed)
        self.valid_set = TokenDataset(cache, split=data.valid_split, num_quantizers=num_quantizers,
                                      max_frames=data.max_frames, random_crop=False) if data.valid_split else None
        self.sampler = BucketBatchSampler(
            self.train_set.lengths(), data.batch_size, bucket_batches=data.bucket_batches,
            seed=recipe.seed, rank=context.rank, world_size=context.world_size,
        )

    def train(self, epoch: int, start_batch: int) -> Iterable[Batch]:
        self.train_set.set_epoch(epoch)
        self.sampler.set_epoch(epoch, start_batch)
        # A generator of its own: a DataLoader iterator otherwise draws its workers' base seed
        # from the global RNG, and a resumed run would then drop out other units.
        return DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=pad_collate,
                          num_workers=self.recipe.data.num_workers, worker_init_fn=ignore_stop_signals,
                          generator=torch.Generator().manual_seed(self.recipe.seed + epoch))

    def valid(self) -> Iterator[Batch]:
        if self.valid_set is None:
            return iter(())
        sampler = BucketBatchSampler(self.valid_set.lengths(), self.recipe.data.batch_size, shuffle=False,
                                     rank=self.context.rank, world_size=self.context.world_size)
        loader = DataLoader(self.valid_set, batch_sampler=sampler, collate_fn=pad_collate,
                            generator=torch.Generator().manual_seed(0))
        return (batch for batch, _ in zip(loader, range(self.recipe.schedule.valid_batches)))
