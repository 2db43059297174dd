"""Merge token caches into one, for training on several corpora without tokenizing them again.

    soundstorm corpus merge-caches data/synth-plus-tokens data/synth-extra-tokens \
        --out data/synth-plus-extra-tokens

Every input must have been made by the same codec (its name, rates, levels, codebook size and
encoder weights) and the same semantic tokenizer, or none: a cache is a function of those, and
a model trained on a mix of two codecs' tokens would be trained on noise. A mismatch is refused,
naming the field and both caches. Utterance ids must be unique across the inputs (the first
clash is named). Each utterance keeps its speaker, text and split.

The output's shards are the inputs' shards, in order, hard-linked where the file system allows
(a cache is never modified once written, so nothing is shared that could change) and copied
otherwise. They go into a staging folder that is renamed into place once `cache.json` is
written, so the output is either complete or absent; an existing output is refused, and an
input is never modified. Merging is seconds; tokenizing the union again is minutes to hours.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from soundstorm.atomic import atomic_write_text
from soundstorm.data.cache import FORMAT_VERSION, META_NAME, SHARDS_DIR, TokenCache, shard_name


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def _check_same(name: str, first: Any, other: Any, first_root: Path, other_root: Path) -> None:
    if first == other:
        return
    if isinstance(first, dict) and isinstance(other, dict):
        for field in sorted(set(first) | set(other)):
            if first.get(field) != other.get(field):
                raise ValueError(
                    f"the caches disagree on {name} {field}: {first_root} has {first.get(field)!r}, "
                    f"{other_root} has {other.get(field)!r}; merged caches need the same codec and "
                    "semantic tokenizer (tokenize one corpus again with the other's)"
                )
    raise ValueError(f"the caches disagree on {name}: {first_root} has {first!r}, {other_root} has {other!r}")


def merge_token_caches(inputs: Sequence[str | Path], out: str | Path) -> TokenCache:
    """The token caches `inputs`, one after another, as one cache at `out` (which must not exist)."""
    if not inputs:
        raise ValueError("merge-caches needs at least one input cache")
    out = Path(out)
    roots = [Path(root) for root in inputs]
    for root in roots:
        if root.absolute() == out.absolute():
            raise ValueError(f"the output {out} is also an input: write the merge to another folder")
    if out.exists():
        raise FileExistsError(f"{out} exists: merge into a new folder (nothing was changed)")
    caches = [TokenCache(root) for root in roots]  # each checked: complete, readable, this format
    first = caches[0]
    origin: dict[str, Path] = {}
    for cache in caches:
        _check_same("codec", first.codec, cache.codec, first.root, cache.root)
        _check_same("semantic tokenizer", first.semantic_info, cache.semantic_info, first.root, cache.root)
        for item in cache.items:
            if item.id in origin:
                raise ValueError(f"utterance id {item.id!r} is in both {origin[item.id]} and {cache.root}: "
                                 "merged caches need unique ids")
            origin[item.id] = cache.root

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shards: list[dict[str, Any]] = []
        for cache in caches:
            for shard in cache.meta["shards"]:
                source = cache.root / SHARDS_DIR / shard["name"]
                target = staging / SHARDS_DIR / shard_name(len(shards))
                target.mkdir(parents=True)
                for file in source.iterdir():  # whatever the cache format keeps in a shard
                    _link_or_copy(file, target / file.name)
                shards.append(dict(shard, name=target.name))
        meta = {
            "format_version": FORMAT_VERSION,
            "codec": first.codec,
            "semantic": first.semantic_info,  # None for unconditional caches, as tokenize writes it
            "merged_from": [
                {"path": str(cache.root.resolve()), "num_items": len(cache), "manifest": cache.meta.get("manifest")}
                for cache in caches
            ],
            "num_items": sum(len(cache) for cache in caches),
            "num_frames": sum(int(shard["num_frames"]) for shard in shards),
            "shards": shards,
        }
        atomic_write_text(staging / META_NAME, json.dumps(meta, indent=2) + "\n")
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TokenCache(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", type=Path, nargs="+", help="token caches to merge, in order")
    parser.add_argument("--out", type=Path, required=True, help="the merged cache's folder (must not exist)")


def run(args: argparse.Namespace) -> int:
    cache = merge_token_caches(args.inputs, args.out)
    hours = float(sum(item.duration for item in cache.items)) / 3600
    speakers = len({item.speaker for item in cache.items})
    print(f"token cache at {args.out}: {len(cache)} utterances of {speakers} speakers, {hours:.2f} h, "
          f"{int(cache.num_frames.sum())} frames")
    return 0
