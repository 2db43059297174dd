"""Merge manifests into one, for training on several corpora at once.

    soundstorm corpus merge data/synth/manifest.jsonl data/synth-extra/manifest.jsonl \
        --out data/codec-mix/manifest.jsonl

Each entry keeps its id, speaker, split and everything else; its audio path is rewritten
relative to the new manifest's folder, so that the files stay where they are and the merged
manifest reads them. Ids must be unique across the inputs (an error names the first clash and
both manifests): the synthetic corpora's ids start with their speaker's, so corpora of other
voices never clash. The output is written atomically; an input is never modified.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from soundstorm.data.manifest import ManifestEntry, read_manifest, write_manifest


def merge_manifests(inputs: Sequence[str | Path], out: str | Path) -> list[ManifestEntry]:
    """The entries of `inputs`, in order, with paths relative to `out`'s folder; written to `out`."""
    if not inputs:
        raise ValueError("merge needs at least one input manifest")
    out = Path(out)
    out_root = out.absolute().parent
    merged: list[ManifestEntry] = []
    origin: dict[str, Path] = {}
    for manifest in map(Path, inputs):
        if manifest.absolute() == out.absolute():
            raise ValueError(f"the output {out} is also an input: write the merge to another file")
        root = manifest.absolute().parent
        for entry in read_manifest(manifest):
            if entry.id in origin:
                raise ValueError(f"id {entry.id!r} is in both {origin[entry.id]} and {manifest}: "
                                 "merged manifests need unique ids")
            origin[entry.id] = manifest
            path = Path(os.path.relpath(entry.audio_path(root).absolute(), out_root))
            merged.append(replace(entry, path=path.as_posix()))
    write_manifest(merged, out)
    return merged


def summary(entries: Sequence[ManifestEntry]) -> str:
    hours = Counter[str]()
    for entry in entries:
        hours[entry.split or "none"] += entry.duration / 3600
    splits = ", ".join(f"{split} {value:.2f} h" for split, value in sorted(hours.items()))
    return f"{len(entries)} utterances of {len({e.speaker for e in entries})} speakers ({splits})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", type=Path, nargs="+", help="manifests to merge, in order")
    parser.add_argument("--out", type=Path, required=True, help="the merged manifest to write")


def run(args: argparse.Namespace) -> int:
    entries = merge_manifests(args.inputs, args.out)
    print(f"{args.out}: {summary(entries)}")
    return 0

