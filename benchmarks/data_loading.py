"""Data-loading throughput against training throughput, on this machine.

    .venv/bin/python benchmarks/data_loading.py --hours 5 --batch-size 16 --max-frames 500

Builds a token cache of random codes (the loader's cost does not depend on their values) with
the default demo corpus's size, then times, side by side: batches per second from the
DataLoader (bucketed, cropped, padded) with 0, 1 and 2 workers, and training steps per second
of SoundStorm models on the same batches. Loading starves training when the first is not
well above the second.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from soundstorm import SoundStorm, SoundStormConfig
from soundstorm.data import cache as cache_format
from soundstorm.data.cache import CacheItem, TokenCache
from soundstorm.data.collate import pad_collate
from soundstorm.data.dataset import TokenDataset
from soundstorm.data.sampler import BucketBatchSampler

FRAME_RATE, SEMANTIC_RATE, Q, K, V = 50, 25, 8, 1024, 500


def random_cache(root: Path, hours: float, seed: int = 0) -> TokenCache:
    rng = np.random.default_rng(seed)
    durations = []
    while sum(durations) < hours * 3600:
        durations.append(float(rng.uniform(1.0, 12.0)))  # utterance lengths of the synthetic corpus
    settings = {
        "format_version": cache_format.FORMAT_VERSION,
        "codec": {"name": "random", "sample_rate": 16000, "frame_rate": FRAME_RATE, "num_quantizers": Q, "codebook_size": K},
        "semantic": {"name": "random", "sample_rate": 16000, "rate": SEMANTIC_RATE, "vocab_size": V},
        "manifest": None,
        "shard_size": 256,
    }
    num_shards = 0
    for start in range(0, len(durations), 256):
        chunk = durations[start : start + 256]
        frames = [int(d * FRAME_RATE) for d in chunk]
        items = [CacheItem(f"u{start + i}", "spk", None, "train", d) for i, d in enumerate(chunk)]
        codes = [rng.integers(0, K, (t, Q)) for t in frames]
        semantic = [rng.integers(0, V, -(-t // 2)) for t in frames]
        cache_format.write_shard(root, num_shards, items, codes, semantic, np.dtype(np.uint16))
        num_shards += 1
    cache_format.write_meta(root, settings, num_shards)
    return TokenCache(root)


def loader_rate(dataset: TokenDataset, batch_size: int, workers: int, num_batches: int) -> float:
    sampler = BucketBatchSampler(dataset.lengths(), batch_size, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=pad_collate, num_workers=workers,
                        persistent_workers=False)
    num_batches = min(num_batches, len(sampler) - 1)  # one epoch at most
    iterator = iter(loader)
    next(iterator)  # worker start-up is paid once per epoch, not per batch
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)
    return num_batches / (time.perf_counter() - start)


def training_rate(config: SoundStormConfig, dataset: TokenDataset, batch_size: int, steps: int) -> float:
    torch.manual_seed(0)
    model = SoundStorm(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sampler = BucketBatchSampler(dataset.lengths(), batch_size, seed=0)
    batches = [pad_collate([dataset[i] for i in b]) for b, _ in zip(sampler, range(steps + 1))]
    times = []
    for batch in batches:
        start = time.perf_counter()
        out = model(batch.codes, batch.semantic, batch.lengths)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-frames", type=int, default=500)
    parser.add_argument("--batches", type=int, default=200, help="batches timed per loader setting")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        cache = random_cache(Path(folder) / "cache", args.hours)
        print(f"random cache: {len(cache)} utterances, {args.hours:g} h, built in {time.perf_counter() - start:.1f} s")
        dataset = TokenDataset(cache, max_frames=args.max_frames)
        print(f"batch {args.batch_size} x up to {args.max_frames} frames, {args.threads} threads\n")
        print("| what | per second |\n|---|---|")
        for workers in (0, 1, 2):
            rate = loader_rate(dataset, args.batch_size, workers, args.batches)
            print(f"| DataLoader, {workers} workers | {rate:.0f} batches |", flush=True)
        for name in ("tiny", "small"):
            config = SoundStormConfig.preset(name, codebook_size=K, num_quantizers=Q, semantic_vocab_size=V)
            rate = training_rate(config, dataset, args.batch_size, steps=5)
            print(f"| training step, {name} preset | {rate:.2f} steps |", flush=True)


if __name__ == "__main__":
    main()
