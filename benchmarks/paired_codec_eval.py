"""Two `soundstorm codec eval` runs compared clip by clip: paired differences with their
standard errors, by split and by speaker, and the gap that remains to Opus.

    .venv/bin/python benchmarks/paired_codec_eval.py runs/codec-eval-a/codec_eval.json runs/codec-eval-b/codec_eval.json

Both runs must have scored the same clips (the same manifest, --splits and --max-items). For
each split, each speaker in it and each number of levels both runs decoded: A's and B's own
means of PESQ and STOI, then the mean of (B - A) for PESQ, STOI and mel distance, +- the
standard error of that mean, then B's mean against the Opus bitrate the runs share (the 6 kbit/s
reference by default), as B - Opus +- its standard error.
A clip a metric could not score in either run is left out of that metric.

Where both runs heard their clips (codec eval --asr), a second table compares the words: each
run's pooled WER, and B - A of the per-clip WER and CER +- its standard error, beside the
original audio's WER (the ceiling).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from paired_eval import mean_and_error  # this folder is sys.path[0] when the script runs; it puts the repo on sys.path
from paired_probe import per_sentence

from soundstorm.eval.asr import error_rates

METRICS = ("pesq", "stoi", "mel_distance")


def differences(a: list[dict], b: list[dict], metric: str) -> list[float]:
    """B - A for each clip both runs could score on `metric`."""
    return [y[metric] - x[metric] for x, y in zip(a, b) if x[metric] is not None and y[metric] is not None]


def paired(a: list[dict], b: list[dict], metric: str) -> str:
    mean, error = mean_and_error(differences(a, b, metric))
    return f"{mean:+.4f} +- {error:.4f}"


def mean(scores: list[dict], metric: str) -> float:
    return mean_and_error([score[metric] for score in scores if score[metric] is not None])[0]


def items_by_split(report: dict) -> dict[str, dict[str, dict]]:
    return {split["split"]: {item["id"]: item for item in split.get("items", [])} for split in report["splits"]}


def shared_clips(split: str, a_items: dict[str, dict], b_items: dict[str, dict]) -> list[str]:
    """The clips both runs scored in `split`; an error when they scored different ones."""
    shared = [key for key in a_items if key in b_items]
    if shared and (len(shared) != len(a_items) or len(shared) != len(b_items)):
        raise SystemExit(f"split {split}: the runs scored different clips ({len(a_items)} and {len(b_items)}, "
                         f"{len(shared)} shared): use the same manifest, --splits and --max-items")
    return shared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="codec_eval.json of the baseline codec")
    parser.add_argument("b", type=Path, help="codec_eval.json of the codec compared with it")
    args = parser.parse_args()
    a_run, b_run = (items_by_split(json.loads(path.read_text(encoding="utf-8"))) for path in (args.a, args.b))
    if not any(a_run.values()):
        raise SystemExit(f"{args.a} holds no per-clip scores: it predates them; run codec eval again")
    print(f"B = {args.b}\nA = {args.a}\n")
    print("| split | speaker | n | levels | PESQ A -> B | STOI A -> B | PESQ B - A | STOI B - A | mel dist. B - A "
          "| Opus kbit/s | PESQ B - Opus | STOI B - Opus |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for split, a_items in a_run.items():
        b_items = b_run.get(split, {})
        shared = shared_clips(split, a_items, b_items)
        if not shared:
            continue
        speakers = sorted({str(a_items[key]["speaker"]) for key in shared})
        levels = [q for q in a_items[shared[0]]["codec"] if q in b_items[shared[0]]["codec"]]
        opus_rates = list(b_items[shared[0]]["opus"])
        for speaker in ["all", *speakers] if len(speakers) > 1 else ["all"]:
            keys = [key for key in shared if speaker == "all" or str(a_items[key]["speaker"]) == speaker]
            for q in levels:
                a_scores = [a_items[key]["codec"][q] for key in keys]
                b_scores = [b_items[key]["codec"][q] for key in keys]
                means = [f"{mean(a_scores, metric):.3f} -> {mean(b_scores, metric):.3f}" for metric in ("pesq", "stoi")]
                cells = means + [paired(a_scores, b_scores, metric) for metric in METRICS]
                opus_cells = ["", "", ""]
                if q == levels[-1] and opus_rates:
                    rate = opus_rates[-1]  # the highest Opus bitrate scored: the reference
                    opus_scores = [b_items[key]["opus"][rate] for key in keys]
                    opus_cells = [rate, paired(opus_scores, b_scores, "pesq"), paired(opus_scores, b_scores, "stoi")]
                print(f"| {split} | {speaker} | {len(keys)} | {q} | {' | '.join(cells)} | {' | '.join(opus_cells)} |")
    print("\n(mean of the per-clip differences +- its standard error; mel distance: lower is better)")
    words_table(a_run, b_run)
    return 0


def words_table(a_run: dict[str, dict[str, dict]], b_run: dict[str, dict[str, dict]]) -> None:
    """The paired words, where both runs heard their clips (codec eval --asr)."""
    rows = []
    for split, a_items in a_run.items():
        b_items = b_run.get(split, {})
        shared = shared_clips(split, a_items, b_items)
        if not shared or not a_items[shared[0]].get("heard") or not b_items[shared[0]].get("heard"):
            continue
        speakers = sorted({str(a_items[key]["speaker"]) for key in shared})
        levels = [q for q in a_items[shared[0]]["codec"] if f"codec:{q}" in b_items[shared[0]]["heard"]]
        for speaker in ["all", *speakers] if len(speakers) > 1 else ["all"]:
            keys = [key for key in shared if speaker == "all" or str(a_items[key]["speaker"]) == speaker]
            texts = [a_items[key]["text"] for key in keys]
            original = error_rates(texts, [a_items[key]["heard"]["original"] for key in keys]).wer
            for q in levels:
                heard = [[items[key]["heard"][f"codec:{q}"] for key in keys] for items in (a_items, b_items)]
                pooled = [error_rates(texts, h).wer for h in heard]
                clips = [per_sentence(texts, run) for run in heard]
                cells = []
                for metric in ("wer", "cer"):
                    mean, error = mean_and_error([getattr(y, metric) - getattr(x, metric)
                                                  for x, y in zip(clips[0], clips[1], strict=True)])
                    cells.append(f"{mean:+.3f} +- {error:.3f}")
                rows.append(f"| {split} | {speaker} | {len(keys)} | {q} | {original:.3f} "
                            f"| {pooled[0]:.3f} -> {pooled[1]:.3f} | {' | '.join(cells)} |")
    if rows:
        print("\n| split | speaker | n | levels | WER original | WER A -> B | WER B - A | CER B - A |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        print("\n".join(rows))
        print("\n(pocketsphinx; WER pooled over the clips; B - A: the mean of the per-clip differences +- its standard error)")


if __name__ == "__main__":
    raise SystemExit(main())
