"""`soundstorm semantic eval`: what semantic tokens carry (phones) and leak (the speaker).

    soundstorm semantic eval --manifest data/synth/manifest.jsonl \
        --tokenizer content:models/semantic --tokenizer mfcc:models/mfcc-km512 \
        --codec soundstream:models/codec --encoder runs/semantic/model \
        --markdown docs/semantic.md --json docs/semantic.json

On utterances the tokenizers were not fitted on (by default the `test` split, whose sentences
no training utterance speaks, and `test-unseen-speaker`, whose voices no training utterance
has), for every tokenizer (and the codec's tokens, for comparison):

- speaker leak: the held-out accuracy of a linear probe from an utterance's token histogram
  to its speaker (soundstorm.eval.probe), next to chance. Lower is better for semantic tokens.
- content: phone-normalised mutual information (PNMI) and phone purity of the tokens against
  the corpus's phone timings, on the unseen speakers. Higher is better.
- with --encoder, the content encoder's own phone accuracy on the unseen speakers.

Writes a markdown table and JSON, each with the command that made them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from soundstorm.atomic import atomic_write_text
from soundstorm.data.manifest import ManifestEntry, read_manifest
from soundstorm.eval.probe import phone_mutual_information, phone_purity, speaker_probe, token_histograms
from soundstorm.semantic.fit import audio_batches
from soundstorm.semantic.phones import IGNORE, build_inventory, frame_targets

UNSEEN = "test-unseen-speaker"


def _sequences(tokenize: Any, entries: list[ManifestEntry], root: Path, sample_rate: int) -> list[Tensor]:
    """Each entry's tokens: [S] (semantic) or [T, Q] (codec), without padding."""
    out: list[Tensor] = []
    with torch.inference_mode():
        for wav, lengths in audio_batches(entries, root, sample_rate, batch_size=8):
            for tokens in tokenize(wav, lengths):
                out.append(tokens)
    return out


def _content_scores(sequences: list[Tensor], entries: list[ManifestEntry], rate: float, vocab_size: int,
                    inventory: tuple[str, ...]) -> dict[str, float]:
    tokens, phones = [], []
    for sequence, entry in zip(sequences, entries):
        if entry.split != UNSEEN or not entry.phones:
            continue
        targets = frame_targets(entry.phones, inventory, len(sequence), 1.0 / rate)
        keep = targets != IGNORE
        tokens.append(sequence[keep])
        phones.append(targets[keep])
    if not tokens:
        return {}
    t, p = torch.cat(tokens), torch.cat(phones)
    return {"pnmi": phone_mutual_information(t, p, vocab_size, len(inventory)),
            "phone_purity": phone_purity(t, p, vocab_size, len(inventory))}


MIN_PER_SPEAKER = 4  # the probe's outer and inner 2-fold cross-validation need two a fold


def choose_entries(entries: list[ManifestEntry], splits: tuple[str, ...], max_per_speaker: int,
                   seed: int = 0) -> list[ManifestEntry]:
    """The entries of `splits`, at most max_per_speaker of each speaker (a seeded sample), in
    manifest order; speakers with fewer than MIN_PER_SPEAKER are left out."""
    by_speaker: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        if e.split in splits:
            by_speaker.setdefault(e.speaker, []).append(i)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for indices in by_speaker.values():
        if len(indices) >= MIN_PER_SPEAKER:
            chosen += sorted(rng.permutation(indices)[:max_per_speaker].tolist())
    return [entries[i] for i in sorted(chosen)]


def evaluate(manifest: Path, tokenizer_specs: list[str], codec_spec: str | None, encoder: Path | None,
             splits: tuple[str, ...] = ("test", UNSEEN), folds: int = 2, max_per_speaker: int = 40) -> dict[str, Any]:
    from soundstorm.semantic import load_semantic_tokenizer

    all_entries = read_manifest(manifest)
    entries = choose_entries(all_entries, splits, max_per_speaker)
    if len({e.speaker for e in entries}) < 2:
        raise ValueError(f"{manifest}: the speaker probe needs two or more speakers with at least {MIN_PER_SPEAKER} "
                         f"utterances in splits {splits}")
    inventory = build_inventory(e.phones for e in all_entries if e.split == "train")
    speakers = [e.speaker for e in entries]
    root = manifest.parent
    rows: list[dict[str, Any]] = []

    for spec in tokenizer_specs:
        tokenizer = load_semantic_tokenizer(spec)

        def tokenize(wav: Tensor, lengths: Tensor, tokenizer: Any = tokenizer) -> list[Tensor]:
            tokens, token_lengths = tokenizer.tokenize(wav, lengths)
            return [t[: int(n)] for t, n in zip(tokens, token_lengths)]

        sequences = _sequences(tokenize, entries, root, tokenizer.sample_rate)
        probe = speaker_probe(token_histograms(sequences, tokenizer.vocab_size), speakers, folds=folds)
        rows.append({"tokens": spec, "name": tokenizer.name, "vocab_size": tokenizer.vocab_size, "rate": tokenizer.rate,
                     "speaker_probe_accuracy": probe.accuracy, "chance": probe.chance,
                     **_content_scores(sequences, entries, tokenizer.rate, tokenizer.vocab_size, inventory)})

    if codec_spec:
        from soundstorm.codecs import load_codec

        codec = load_codec(codec_spec)

        def encode(wav: Tensor, lengths: Tensor) -> list[Tensor]:
            return [codec.encode(w[None, :, : int(n)])[0] for w, n in zip(wav, lengths)]  # [T, Q] each

        sequences = _sequences(encode, entries, root, codec.sample_rate)  # [T, Q] each
        K = codec.codebook_size
        for name, histograms in (
            ("level 1", token_histograms([s[:, 0] for s in sequences], K)),
            ("all levels", torch.cat([token_histograms([s[:, q] for s in sequences], K)
                                      for q in range(codec.num_quantizers)], dim=1)),
        ):
            probe = speaker_probe(histograms, speakers, folds=folds)
            row: dict[str, Any] = {"tokens": f"{codec_spec} ({name})", "name": codec.name, "vocab_size": K,
                                   "rate": codec.frame_rate, "speaker_probe_accuracy": probe.accuracy,
                                   "chance": probe.chance}
            if name == "level 1":
                row.update(_content_scores([s[:, 0] for s in sequences], entries, codec.frame_rate, K, inventory))
            rows.append(row)

    result: dict[str, Any] = {"manifest": str(manifest), "splits": list(splits), "utterances": len(entries),
                              "speakers": len(set(speakers)), "rows": rows}
    if encoder is not None:
        result["encoder_phone_accuracy"] = encoder_phone_accuracy(encoder, [e for e in entries if e.split == UNSEEN], root)
    return result


def encoder_phone_accuracy(path: Path, entries: list[ManifestEntry], root: Path) -> float:
    """Frame accuracy of the content encoder's phone classifier on entries."""
    from soundstorm.semantic.content import ContentEncoder

    encoder = ContentEncoder.from_pretrained(path).eval()
    config = encoder.config
    correct = counted = 0
    entries = [e for e in entries if e.phones]
    with torch.inference_mode():
        for start, (wav, lengths) in zip(range(0, len(entries), 8), audio_batches(entries, root, config.sample_rate)):
            output = encoder(wav, lengths)
            for b, entry in enumerate(entries[start : start + 8]):
                targets = frame_targets(entry.phones, config.phones, output.logits.shape[1], 1.0 / config.rate)
                keep = (targets != IGNORE) & output.valid[b]
                correct += int((output.logits[b].argmax(dim=-1)[keep] == targets[keep]).sum())
                counted += int(keep.sum())
    return correct / max(1, counted)


def to_markdown(result: dict[str, Any], command: str) -> str:
    lines = [
        "# Semantic tokens: content and speaker leak", "",
        f"    {command}", "",
        f"{result['utterances']} utterances of splits {', '.join(result['splits'])} ({result['speakers']} speakers, "
        "as many utterances of each; none used to fit a tokenizer). Speaker probe: held-out accuracy of a "
        "linear classifier from an utterance's token histogram to its speaker, 2-fold cross-validated "
        "(lower = less speaker identity; chance = 1 / speakers); PNMI and purity against phone timings on "
        "the unseen speakers (higher = more content).", "",
        "| tokens | V | rate (Hz) | speaker probe accuracy | chance | PNMI | phone purity |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        pnmi = f"{row['pnmi']:.3f}" if "pnmi" in row else "-"
        purity = f"{row['phone_purity']:.3f}" if "phone_purity" in row else "-"
        lines.append(f"| `{row['tokens']}` | {row['vocab_size']} | {row['rate']:g} | {row['speaker_probe_accuracy']:.3f} | "
                     f"{row['chance']:.3f} | {pnmi} | {purity} |")
    if "encoder_phone_accuracy" in result:
        lines += ["", f"Content encoder phone accuracy on the unseen speakers: {result['encoder_phone_accuracy']:.3f}."]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, required=True, help="corpus manifest with splits and phone timings")
    parser.add_argument("--tokenizer", action="append", default=[], help="semantic tokenizer spec; repeatable")
    parser.add_argument("--codec", help="codec spec, to probe its tokens for comparison")
    parser.add_argument("--encoder", type=Path, help="content encoder folder, for its phone accuracy")
    parser.add_argument("--splits", nargs="+", default=["test", UNSEEN], help="splits to evaluate on")
    parser.add_argument("--folds", type=int, default=2, help="cross-validation folds of the probe (default 2)")
    parser.add_argument("--max-per-speaker", type=int, default=40, help="utterances per speaker, a seeded sample (default 40)")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    parser.add_argument("--json", type=Path, help="write the results here")


def run(args: argparse.Namespace) -> int:
    if not args.tokenizer and not args.codec:
        raise SystemExit("give at least one --tokenizer or a --codec")
    result = evaluate(args.manifest, args.tokenizer, args.codec, args.encoder, tuple(args.splits), args.folds,
                      args.max_per_speaker)
    command = "soundstorm semantic eval " + shlex.join(sys.argv[3:] if sys.argv[1:3] == ["semantic", "eval"] else sys.argv[1:])
    result["command"] = command
    markdown = to_markdown(result, command)
    if args.markdown:
        atomic_write_text(args.markdown, markdown)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(markdown)
    return 0
