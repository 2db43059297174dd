"""What a dialogue turn's text-to-semantic context does to its words: each turn continuing the
turn before it (after a <turn> marker, the pipeline's dialogue until 2026-12-07) against each
turn read alone (as text to speech reads a sentence without a transcribed prompt).

    .venv/bin/python benchmarks/dialogue_context.py --manifest data/synth/manifest.jsonl \
        --dialogues 22 --threads 2 --json docs/dialogue_context.json

Scripts of six turns from the manifest's held-out sentences (test split, any voice), the same
for both ways and the same seed per turn. Measured on the semantic tokens alone (no SoundStorm,
no ASR): the phone error rate of each turn's tokens against its text (forced alignment through
the semantic tokenizer's phone classes, soundstorm/text/phone_score.py), tokens per text symbol,
and how many turns came out shorter than the training data's fewest tokens per symbol for their
own text (a turn the model ended early: its words are lost), or longer than the most.

--audio also speaks every turn (SoundStorm and the codec, the pipeline's defaults, the turns
alternating between two bundled flite voices, on which pocketsphinx is meaningful) and scores
what pocketsphinx hears in it against the turn's text: CER and WER, paired by turn.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.data.manifest import read_manifest  # noqa: E402
from soundstorm.eval.asr import error_rates  # noqa: E402
from soundstorm.text.pipeline import DecodingOptions, Plan, SpeechPipeline  # noqa: E402

TURNS = 6


def mean_and_error(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--dialogues", type=int, default=22)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--audio", action="store_true", help="also speak each turn and score it with pocketsphinx")
    parser.add_argument("--voices", nargs=2, default=["flite-slt", "flite-awb"], help="two voices of MODELS/voices")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipeline = SpeechPipeline.from_folder(args.models)
    scorer, t2s = pipeline.phone_scorer, pipeline.t2s
    if scorer is None or t2s is None:
        raise SystemExit("needs a models folder with a text-to-semantic model and a phone-class semantic tokenizer")
    texts = sorted({e.text for e in read_manifest(args.manifest) if e.split == "test" and e.text})
    if len(texts) < TURNS * args.dialogues:
        raise SystemExit(f"{args.manifest}: {len(texts)} held-out sentences, {TURNS * args.dialogues} needed")
    step = len(texts) // (TURNS * args.dialogues)
    picked = texts[::step][: TURNS * args.dialogues]
    low, high = t2s.config.min_tokens_per_symbol, t2s.config.max_tokens_per_symbol

    voices = [pipeline.voice(args.models / "voices" / f"{name}.wav") for name in args.voices]
    if args.audio:
        from soundstorm.eval.asr import Recognizer

        recognizer = Recognizer()
    modes = ("previous turn", "alone")
    turns: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    seconds = {mode: 0.0 for mode in modes}
    for d in range(args.dialogues):
        script = picked[d * TURNS : (d + 1) * TURNS]
        for mode in modes:
            options = DecodingOptions(seed=d)
            context = None
            start = time.perf_counter()
            for i, text in enumerate(script):
                tokens = pipeline.text_to_semantic(text, None, context=context if mode == "previous turn" else None,
                                                   options=options, salt=2 * i)
                symbols = len(pipeline.symbols.encode(text))
                errors, phones = scorer.phone_errors(tokens, text)
                turns[mode].append({"dialogue": d, "turn": i, "tokens": len(tokens), "symbols": symbols,
                                    "phone_errors": errors, "phones": phones, "text": text, "semantic": tokens})
                context = (text, tokens)
            seconds[mode] += time.perf_counter() - start
            if args.audio:  # each turn its own plan: one batched rendering, one waveform per turn
                rows = turns[mode][-len(script):]
                plans = [Plan([pipeline._segment(row.pop("semantic"), voices[i % 2], options, 2 * i + 1)], [0.0], options)
                         for i, row in enumerate(rows)]
                for row, wav in zip(rows, pipeline.render(plans)):
                    row["hypothesis"] = recognizer.transcribe(wav, pipeline.sample_rate)
                    rates = error_rates([row["text"]], [row["hypothesis"]])
                    row["cer"], row["wer"] = rates.cer, rates.wer
            else:
                for row in turns[mode][-len(script):]:
                    row.pop("semantic")

    summary = {}
    for mode in modes:
        rows = turns[mode]
        per = mean_and_error([r["phone_errors"] / r["phones"] for r in rows])
        rate = [r["tokens"] / r["symbols"] for r in rows]
        summary[mode] = {"turns": len(rows), "phone_error_rate": per,
                         "pooled_phone_error_rate": sum(r["phone_errors"] for r in rows) / sum(r["phones"] for r in rows),
                         "tokens_per_symbol_median": statistics.median(rate),
                         "tokens_per_symbol_10_90": (sorted(rate)[len(rate) // 10], sorted(rate)[len(rate) * 9 // 10]),
                         "too_short": sum(1 for r in rows if low is not None and r["tokens"] < math.floor(low * r["symbols"])),
                         "too_long": sum(1 for r in rows if high is not None and r["tokens"] > math.ceil(high * r["symbols"])),
                         "seconds": seconds[mode]}
        if args.audio:
            summary[mode]["cer"] = error_rates([r["text"] for r in rows], [r["hypothesis"] for r in rows]).cer
            summary[mode]["wer"] = error_rates([r["text"] for r in rows], [r["hypothesis"] for r in rows]).wer
    paired = [(b["phone_errors"] - a["phone_errors"]) / a["phones"] for a, b in zip(turns[modes[0]], turns[modes[1]])]
    difference = mean_and_error(paired)
    later = [(b["phone_errors"] - a["phone_errors"]) / a["phones"]
             for a, b in zip(turns[modes[0]], turns[modes[1]]) if a["turn"] > 0]

    print(f"{args.dialogues} dialogues of {TURNS} turns ({len(picked)} held-out sentences), {args.threads} threads; "
          f"bounds {low:.2f}-{high:.2f} tokens per symbol\n")
    print("| context | turns | phone error rate | pooled | tokens per symbol: median (10-90%) | too short | too long | t2s s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, s in summary.items():
        print(f"| {mode} | {s['turns']} | {s['phone_error_rate'][0]:.3f} +- {s['phone_error_rate'][1]:.3f} | "
              f"{s['pooled_phone_error_rate']:.3f} | {s['tokens_per_symbol_median']:.2f} "
              f"({s['tokens_per_symbol_10_90'][0]:.2f}-{s['tokens_per_symbol_10_90'][1]:.2f}) | {s['too_short']} | "
              f"{s['too_long']} | {s['seconds']:.1f} |")
    print(f"\npaired, alone - previous turn: phone error rate {difference[0]:+.4f} +- {difference[1]:.4f} over all "
          f"turns; {mean_and_error(later)[0]:+.4f} +- {mean_and_error(later)[1]:.4f} over turns 2-{TURNS} "
          "(the first is alone in both)")
    if args.audio:
        for key in ("cer", "wer"):
            pairs = [b[key] - a[key] for a, b in zip(turns[modes[0]], turns[modes[1]])]
            print(f"{key.upper()} of the spoken turns (pocketsphinx): " + ", ".join(
                f"{mode} {summary[mode][key]:.3f}" for mode in modes) +
                f"; paired by turn, alone - previous turn {mean_and_error(pairs)[0]:+.4f} +- {mean_and_error(pairs)[1]:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"models": str(args.models), "manifest": str(args.manifest),
                                         "dialogues": args.dialogues, "threads": args.threads, "summary": summary,
                                         "paired_alone_minus_previous": difference, "turns": turns}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
