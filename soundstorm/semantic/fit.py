"""`soundstorm semantic kmeans`: fit k-means on frame features of a corpus into a tokenizer.

    soundstorm semantic kmeans --features content:runs/semantic/model --manifest data/synth/manifest.jsonl \
        --clusters 512 --out models/semantic
    soundstorm semantic kmeans --features mfcc:25 --manifest data/synth/manifest.jsonl --clusters 512 --out models/mfcc-km512
    soundstorm semantic kmeans --features hubert:path/to/hubert-base?layer=6 --manifest ... --clusters 500 --out models/hubert-km500

--features is `content:ENCODER_FOLDER` (from `soundstorm semantic train`; `?output=posteriors`
clusters its phone posteriors instead of its bottleneck), `mfcc:RATE`
(tokens per second, default 25) or `hubert:PATH_OR_ID?layer=L`. Features of the training split
are collected (a uniform random subset of --max-vectors frames), clustered with Lloyd's
k-means, and written with the extractor as one self-contained folder, atomically.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from soundstorm.data.audio import load_audio
from soundstorm.data.manifest import ManifestEntry, read_manifest
from soundstorm.semantic.kmeans_tokenizer import FrameFeatures, KMeansTokenizer, collect_features, fit_kmeans


def audio_batches(entries: Sequence[ManifestEntry], root: Path, sample_rate: int, batch_size: int = 8,
                  progress: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
    """(wav [B, 1, N] zero-padded, lengths [B]) of entries, in manifest order, resampled and
    downmixed to mono at sample_rate."""
    for start in tqdm(range(0, len(entries), batch_size), disable=not progress, unit="batch"):
        waves = [torch.from_numpy(load_audio(e.audio_path(root), sample_rate=sample_rate, resample=True,
                                             downmix=True)[0]) for e in entries[start : start + batch_size]]
        lengths = torch.tensor([len(w) for w in waves])
        batch = torch.zeros(len(waves), 1, int(lengths.max()))
        for i, w in enumerate(waves):
            batch[i, 0, : len(w)] = w
        yield batch, lengths


def parse_features(spec: str) -> FrameFeatures:
    """An extractor from `content:PATH[?output=posteriors]`, `mfcc[:RATE]` or `hubert:PATH?layer=L`."""
    kind, _, argument = spec.partition(":")
    if kind == "content":
        from soundstorm.semantic.content import ContentEncoder
        from soundstorm.semantic.extractors import ContentFeatures

        path, _, query = argument.partition("?")
        output = "bottleneck"
        for item in filter(None, query.split("&")):
            key, _, value = item.partition("=")
            if key != "output":
                raise ValueError(f"content options are ?output=bottleneck|posteriors, got {query!r}")
            output = value
        encoder = ContentEncoder.from_pretrained(path)
        # The tokenizer stores the encoder in fp16: cluster exactly the features it will compute.
        encoder.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                                 for k, v in encoder.state_dict().items()})
        return ContentFeatures(encoder, output)
    if kind == "mfcc":
        from soundstorm.semantic.extractors import MfccFeatures

        rate = float(argument or 25)
        hop = 16000 / rate
        if hop != int(hop):
            raise ValueError(f"mfcc:RATE needs a rate that divides 16000 Hz into whole hops, got {rate}")
        return MfccFeatures(16000, int(hop))
    if kind == "hubert":
        from soundstorm.semantic.hubert import parse_hubert_spec

        return parse_hubert_spec(argument)
    raise ValueError(f"--features is content:PATH, mfcc:RATE or hubert:PATH?layer=L; got {spec!r}")


def fit_tokenizer(extractor: FrameFeatures, manifest: Path, clusters: int, *, split: str | None = "train",
                  max_vectors: int = 200_000, max_utterances: int | None = None, iters: int = 30, seed: int = 0,
                  progress: bool = False) -> KMeansTokenizer:
    entries = [e for e in read_manifest(manifest) if split is None or e.split == split]
    if not entries:
        raise ValueError(f"{manifest} has no utterances of split {split!r}")
    if max_utterances is not None:
        generator = torch.Generator().manual_seed(seed)
        entries = [entries[i] for i in sorted(torch.randperm(len(entries), generator=generator)[:max_utterances].tolist())]
    batches = audio_batches(entries, manifest.parent, extractor.sample_rate, progress=progress)
    vectors = collect_features(extractor, batches, max_vectors, seed=seed)
    return KMeansTokenizer(extractor, fit_kmeans(vectors, clusters, iters=iters, seed=seed))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="content:ENCODER, mfcc:RATE or hubert:PATH?layer=L")
    parser.add_argument("--manifest", type=Path, required=True, help="corpus manifest (soundstorm corpus synth / scan)")
    parser.add_argument("--clusters", type=int, default=512, help="vocabulary size V (default 512)")
    parser.add_argument("--out", type=Path, required=True, help="tokenizer folder to write")
    parser.add_argument("--split", default="train", help="manifest split to fit on (default train)")
    parser.add_argument("--max-vectors", type=int, default=200_000, help="frames to cluster, a random subset (default 200000)")
    parser.add_argument("--max-utterances", type=int, help="a random subset of utterances (default all)")
    parser.add_argument("--iters", type=int, default=30, help="k-means iterations (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    tokenizer = fit_tokenizer(parse_features(args.features), args.manifest, args.clusters, split=args.split,
                              max_vectors=args.max_vectors, max_utterances=args.max_utterances, iters=args.iters,
                              seed=args.seed, progress=not args.quiet and sys.stderr.isatty())
    tokenizer.save(args.out)
    print(f"{tokenizer.name}: {tokenizer.vocab_size} tokens at {tokenizer.rate:g} Hz, written to {args.out}")
    return 0

