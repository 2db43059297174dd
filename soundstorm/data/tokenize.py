"""`soundstorm corpus tokenize`: run a codec and a semantic tokenizer over a manifest into a
token cache (soundstorm/data/cache.py).

Resumable: the manifest is cut into shards of `shard_size` utterances; finished shards are
skipped. Under torchrun each process takes every world_size-th shard, and rank 0 writes
cache.json once all are done. A cache or unfinished build whose settings differ from the
current ones (codec, tokenizer, manifest, shard size) is refused, naming the field.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from soundstorm.atomic import atomic_write_text
from soundstorm.codecs import Codec, load_codec
from soundstorm.data import cache as cache_format
from soundstorm.data.cache import CacheItem, TokenCache
from soundstorm.data.manifest import ManifestEntry, read_manifest
from soundstorm.semantic import SemanticTokenizer, load_semantic_tokenizer


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_same(found: dict[str, Any], wanted: dict[str, Any], where: Path, prefix: str = "") -> None:
    for key in sorted(set(found) | set(wanted)):
        if key in ("num_items", "num_frames", "shards"):
            continue
        a, b = found.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            _check_same(a, b, where, f"{prefix}{key}.")
        elif a != b:
            raise ValueError(
                f"{where} was built with {prefix}{key} = {a!r}, but this run has {prefix}{key} = {b!r}; "
                "use another output folder, or delete that one to rebuild"
            )


def _encode(codec: Codec, wav: np.ndarray) -> np.ndarray:
    """float wav [N] -> codes [T, Q]."""
    with torch.inference_mode():
        return codec.encode(torch.from_numpy(wav).float()[None, None])[0].cpu().numpy()


def _tokenize(semantic: SemanticTokenizer, wav: np.ndarray) -> np.ndarray:
    """float wav [N] -> semantic tokens [S]."""
    with torch.inference_mode():
        tokens, lengths = semantic.tokenize(torch.from_numpy(wav).float()[None, None])
    return tokens[0, : int(lengths[0])].cpu().numpy()


def build_token_cache(
    manifest: str | Path,
    out_dir: str | Path,
    codec: Codec,
    semantic: SemanticTokenizer | None = None,
    *,
    shard_size: int = 256,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
    split: str | None = None,
    sample: int | None = None,
) -> Path | None:
    """Tokenize every utterance of `manifest` (of one `split`, or a seeded `sample` of that
    many: a small cache for a probe or a quick experiment) into a cache at `out_dir`.

    Returns out_dir once the cache is complete; None on a rank that finished its shards while
    others (under torchrun) are still running theirs (rank 0 waits at a barrier and finishes).
    """
    from soundstorm.data.audio import load_audio  # audio I/O: soundfile + soxr

    manifest, out_dir = Path(manifest), Path(out_dir)
    entries = read_manifest(manifest)
    listed = len(entries)
    if split is not None:
        entries = [e for e in entries if e.split == split]
    if not entries:
        raise ValueError(f"{manifest} lists no utterances" + (f" of split {split!r}" if split is not None else ""))
    if sample is not None:
        if sample < 1:
            raise ValueError(f"sample must be at least 1, got {sample}")
        entries = [entries[i] for i in sorted(np.random.default_rng(0).permutation(len(entries))[:sample])]
    if codec.codebook_size > 65536:
        raise ValueError(f"codes are stored as uint16; codebook_size {codec.codebook_size} does not fit")
    settings: dict[str, Any] = {
        "format_version": cache_format.FORMAT_VERSION,
        "codec": codec.describe(),
        "semantic": semantic.describe() if semantic is not None else None,
        "manifest": {"path": str(manifest.resolve()), "sha256": _file_digest(manifest), "num_entries": listed},
        "shard_size": shard_size,
        **({"split": split} if split is not None else {}),
        **({"sample": sample} if sample is not None else {}),
    }
    meta_file, build_file = out_dir / cache_format.META_NAME, out_dir / cache_format.BUILD_NAME
    if meta_file.is_file():
        _check_same(json.loads(meta_file.read_text()), settings, meta_file)
        return out_dir  # already complete
    distributed = world_size > 1 and torch.distributed.is_initialized()
    if rank == 0 and not build_file.is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        if any(out_dir.iterdir()):
            raise ValueError(f"{out_dir} is not empty and holds no token cache: choose an empty or new folder")
        atomic_write_text(build_file, json.dumps(settings, indent=2) + "\n")
    if distributed:
        torch.distributed.barrier()  # the build file exists before any rank writes a shard
    _check_same(json.loads(build_file.read_text()), settings, build_file)

    root = manifest.parent
    num_shards = -(-len(entries) // shard_size)
    mine = [i for i in range(num_shards) if i % world_size == rank]
    semantic_dtype = np.dtype(np.uint16 if semantic is None or semantic.vocab_size <= 65536 else np.int32)
    bar = tqdm(total=len(entries), disable=not progress, desc=f"tokenize (rank {rank})", unit="utt")
    for index in mine:
        shard_entries: list[ManifestEntry] = entries[index * shard_size : (index + 1) * shard_size]
        if (out_dir / cache_format.SHARDS_DIR / cache_format.shard_name(index)).is_dir():
            bar.update(len(shard_entries))
            continue
        items, codes, tokens = [], [], []
        for entry in shard_entries:
            path = entry.audio_path(root)
            wav, _ = load_audio(path, sample_rate=codec.sample_rate, resample=True, downmix=True)
            entry_codes = _encode(codec, wav)  # [T, Q]
            if entry_codes.ndim != 2 or entry_codes.shape[1] != codec.num_quantizers:
                raise ValueError(f"{codec.name} returned codes of shape {entry_codes.shape} for {path}, expected [T, {codec.num_quantizers}]")
            if entry_codes.min() < 0 or entry_codes.max() >= codec.codebook_size:
                raise ValueError(f"{codec.name} returned codes outside [0, {codec.codebook_size}) for {path}")
            codes.append(entry_codes)
            if semantic is not None:
                wav_semantic, _ = load_audio(path, sample_rate=semantic.sample_rate, resample=True, downmix=True)
                entry_tokens = cache_format.fit_semantic(_tokenize(semantic, wav_semantic), len(entry_codes),
                                                         settings["codec"], settings["semantic"])
                if entry_tokens.min() < 0 or entry_tokens.max() >= semantic.vocab_size:
                    raise ValueError(f"{semantic.name} returned tokens outside [0, {semantic.vocab_size}) for {path}")
                tokens.append(entry_tokens)
            items.append(CacheItem(entry.id, entry.speaker, entry.text, entry.split, entry.duration))
            bar.update(1)
        cache_format.write_shard(out_dir, index, items, codes, tokens if semantic is not None else None, semantic_dtype)
    bar.close()

    if distributed:
        torch.distributed.barrier()  # every shard is written
    if rank != 0:
        return None
    cache_format.write_meta(out_dir, settings, num_shards)
    return out_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="JSONL manifest (from `corpus synth` or `corpus scan`)")
    parser.add_argument("out", type=Path, help="folder of the token cache (new, or an interrupted build to resume)")
    parser.add_argument("--codec", required=True, help="codec spec, e.g. python:my_package.codecs:make_codec")
    parser.add_argument("--semantic", help="semantic tokenizer spec (omit for an unconditional cache)")
    parser.add_argument("--shard-size", type=int, default=256, help="utterances per shard (default 256)")
    parser.add_argument("--split", help="only the manifest's utterances of this split (e.g. train)")
    parser.add_argument("--sample", type=int, help="only a seeded random sample of this many utterances")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1 and not torch.distributed.is_initialized():
        # Only for the barriers; ranks may wait long for the slowest one's shards.
        torch.distributed.init_process_group("gloo", timeout=timedelta(hours=12))
    codec = load_codec(args.codec)
    semantic = load_semantic_tokenizer(args.semantic) if args.semantic else None
    done = build_token_cache(
        args.manifest, args.out, codec, semantic, shard_size=args.shard_size, rank=rank,
        world_size=world_size, progress=not args.quiet and sys.stderr.isatty(), split=args.split, sample=args.sample,
    )
    if done is not None:
        cache = TokenCache(done)
        hours = float(sum(item.duration for item in cache.items)) / 3600
        print(f"token cache at {done}: {len(cache)} utterances, {hours:.2f} h, {int(cache.num_frames.sum())} frames")
    if world_size > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
