"""Crops, padding collation and length-bucketed, DDP-sharded batches."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from fakes import FakeCodec, FakeSemantic
from hypothesis import given
from hypothesis import strategies as st
from test_token_cache import make_corpus
from torch.utils.data import DataLoader

from soundstorm import SoundStorm, SoundStormConfig
from soundstorm.data.cache import TokenCache
from soundstorm.data.collate import pad_collate
from soundstorm.data.dataset import TokenDataset
from soundstorm.data.sampler import BucketBatchSampler
from soundstorm.data.tokenize import build_token_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> TokenCache:
    root = tmp_path_factory.mktemp("data")
    manifest = make_corpus(root / "corpus", [0.3, 1.1, 0.52, 2.0, 0.75, 1.37, 0.2, 0.9])
    build_token_cache(manifest, root / "cache", FakeCodec(), FakeSemantic(), shard_size=3)
    return TokenCache(root / "cache")


def test_crops_are_aligned_windows_of_the_original(cache: TokenCache) -> None:
    dataset = TokenDataset(cache, max_frames=20, seed=3)
    starts = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for position in range(len(dataset)):
            example = dataset[position]
            full_codes, full_semantic = cache.codes(example.index), cache.semantic(example.index)
            T = len(example.codes)
            assert T == min(20, len(full_codes))
            start = dataset.crop_start(position, len(full_codes))
            assert start % 2 == 0
            np.testing.assert_array_equal(example.codes.numpy(), full_codes[start : start + T])
            assert len(example.semantic) == -(-T // 2)
            np.testing.assert_array_equal(example.semantic.numpy(), full_semantic[start // 2 : start // 2 + len(example.semantic)])
            if position == 3:
                starts.add(start)
    assert len(starts) > 1, "random crops should move between epochs"
    dataset.set_epoch(1)
    again = TokenDataset(cache, max_frames=20, seed=3)
    again.set_epoch(1)
    assert all(torch.equal(dataset[i].codes, again[i].codes) for i in range(len(dataset)))


def test_splits_levels_and_bad_settings(cache: TokenCache) -> None:
    valid = TokenDataset(cache, split="valid", num_quantizers=2)
    assert [valid[i].index for i in range(len(valid))] == [0, 4]
    assert valid[0].codes.shape[1] == 2
    with pytest.raises(ValueError, match="no items of split 'test'"):
        TokenDataset(cache, split="test")
    with pytest.raises(ValueError, match="num_quantizers must be in"):
        TokenDataset(cache, num_quantizers=5)
    with pytest.raises(ValueError, match="multiple of the rate ratio 2"):
        TokenDataset(cache, max_frames=21)


def test_collated_batches_train_the_model_as_each_example_alone(cache: TokenCache) -> None:
    """Padding is correct if the padded batch's loss on each example equals its loss alone."""
    dataset = TokenDataset(cache, max_frames=40)
    batch = pad_collate([dataset[i] for i in range(4)])
    assert batch.codes.shape == (4, int(batch.lengths.max()), 4)
    assert batch.semantic.shape == (4, -(-batch.codes.shape[1] // 2))
    for b in range(4):
        assert bool((batch.codes[b, batch.lengths[b] :] == 0).all())
    torch.manual_seed(0)
    model = SoundStorm(SoundStormConfig(codebook_size=1024, num_quantizers=4, semantic_vocab_size=100, dim=32, depth=1, heads=2)).double()
    from soundstorm.masking import sample_training_mask

    mask = sample_training_mask(batch.lengths, batch.codes.shape[1], 4, generator=torch.Generator().manual_seed(1))
    out = model(batch.codes, batch.semantic, batch.lengths, mask=mask)
    per_example = (torch.nn.functional.cross_entropy(out.logits.transpose(1, 2), out.targets, reduction="none") * mask.loss)
    for b in range(4):
        T = int(batch.lengths[b])
        alone_mask = type(mask)(
            masked=mask.masked[b : b + 1, :T], loss=mask.loss[b : b + 1, :T], levels=mask.levels[b : b + 1],
            delimiters=mask.delimiters[b : b + 1], ratios=mask.ratios[b : b + 1],
        )
        alone = model(batch.codes[b : b + 1, :T], batch.semantic[b : b + 1, : -(-T // 2)], mask=alone_mask)
        torch.testing.assert_close(per_example[b, :T].sum() / mask.loss[b].sum(), alone.loss)


def test_data_loader_with_workers(cache: TokenCache) -> None:
    dataset = TokenDataset(cache, max_frames=30)
    sampler = BucketBatchSampler(dataset.lengths(), batch_size=3, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=pad_collate, num_workers=2)
    seen = sorted(int(i) for batch in loader for i in batch.indices)
    assert seen == list(range(len(cache)))


@given(
    n=st.integers(1, 60), batch_size=st.integers(1, 7), world_size=st.integers(1, 4),
    bucket_batches=st.integers(1, 5), epoch=st.integers(0, 3), drop_last=st.booleans(),
)
def test_ddp_sharding_covers_every_item(n: int, batch_size: int, world_size: int, bucket_batches: int, epoch: int, drop_last: bool) -> None:
    lengths = np.random.default_rng(n).integers(1, 500, n)
    samplers = [
        BucketBatchSampler(lengths, batch_size, bucket_batches=bucket_batches, seed=5, rank=r, world_size=world_size, drop_last=drop_last)
        for r in range(world_size)
    ]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    per_rank = [list(sampler) for sampler in samplers]
    all_batches = samplers[0].all_batches()
    if not all_batches:
        return
    assert len({len(batches) for batches in per_rank}) == 1, "every rank needs the same number of steps"
    assert all(len(batches) == len(samplers[0]) for batches in per_rank)
    counts = Counter(i for batches in per_rank for batch in batches for i in batch)
    expected_items = {i for batch in all_batches for i in batch}
    assert set(counts) == expected_items
    if not drop_last:
        assert expected_items == set(range(n))
    repeated_batches = len(per_rank[0]) * world_size - len(all_batches)
    assert 0 <= repeated_batches < world_size
    if len(all_batches) % world_size == 0:
        assert set(counts.values()) == {1}, "divisible: every item exactly once"
    for batch in all_batches:  # bucketing: a batch spans a narrow slice of its pool's lengths
        assert len(batch) <= batch_size


def test_bucketing_reduces_padding() -> None:
    lengths = np.random.default_rng(0).integers(10, 1500, 2000)
    def padding(bucket_batches: int) -> float:
        batches = BucketBatchSampler(lengths, 16, bucket_batches=bucket_batches, seed=0).all_batches()
        return sum(max(lengths[b]) * len(b) - sum(lengths[b]) for b in batches) / lengths.sum()
    assert padding(50) < 0.1 < 0.5 < padding(1)


def test_epochs_reshuffle_deterministically() -> None:
    lengths = np.arange(100)
    sampler = BucketBatchSampler(lengths, 10, seed=1)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
