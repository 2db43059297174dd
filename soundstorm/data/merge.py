"""Merge manifests into one, for training on several corpora at once.

    soundstorm corpus merge data/synth/manifest.jsonl data/synth-extra/manifest.jsonl \
        --out data/codec-mix/manifest.jsonl

Each entry keeps its id, speaker, split and everything else; its audio path is rewritten
relative to the new manifest's folder, so that the files stay where they are and the merged
manifest reads them. Ids must be unique across the inputs (an error names the first clash and
both manifests): the synthetic corpora's ids start with their speaker's, so corpora of other
voices never clash. The output is written atomically; an input is never modified.

With --train-only, the inputs after the first are added for training only, as more voices for
a model evaluated on the first: their entries all become `train` (so that the validation loss
and every evaluation stay the first corpus's), and an entry whose text is held out (valid, test
or test-unseen-speaker) in an earlier input is dropped, so that no evaluation sentence is
trained on in another voice. Corpora synthesized from the same sentence sources share sentences.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from soundstorm.data.manifest import ManifestEntry, read_manifest, write_manifest


def merge_manifests(inputs: Sequence[str | Path], out: str | Path, train_only: bool = False) -> list[ManifestEntry]:
    """The entries of `inputs`, in order, with paths relative to `out`'s folder; written to `out`.
    train_only: the inputs after the first become training data only (module docstring)."""
    if not inputs:
        raise ValueError("merge needs at least one input manifest")
    out = Path(out)
    out_root = out.absolute().parent
    merged: list[ManifestEntry] = []
    origin: dict[str, Path] = {}
    held_out: set[str] = set()  # texts of earlier inputs' valid and test entries
    for number, manifest in enumerate(map(Path, inputs)):
        if manifest.absolute() == out.absolute():
            raise ValueError(f"the output {out} is also an input: write the merge to another file")
        root = manifest.absolute().parent
        entries = read_manifest(manifest)
        if train_only and number > 0:
            entries = [replace(e, split="train") for e in entries if e.text is None or e.text not in held_out]
        held_out |= {e.text for e in entries if e.text is not None and e.split not in (None, "train")}
        for entry in entries:
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
    parser.add_argument("--train-only", action="store_true",
                        help="the inputs after the first are training data only: their entries become train, "
                             "and those speaking a sentence held out in an earlier input are dropped")


def run(args: argparse.Namespace) -> int:
    entries = merge_manifests(args.inputs, args.out, train_only=args.train_only)
    print(f"{args.out}: {summary(entries)}")
    return 0

