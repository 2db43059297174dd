"""Does SoundStorm keep a voice as well from another utterance's prompt as from its own start?

    .venv/bin/python benchmarks/prompt_source.py --manifest data/synth/manifest.jsonl --per-voice 24 \
        --min-seconds 5 --voices flite-rms --json docs/voices/prompt_source_heldout.json
    .venv/bin/python benchmarks/prompt_source.py --manifest data/synth/manifest.jsonl --per-voice 10 \
        --min-seconds 5 --splits train --voices flite-slt flite-awb festival-cmu_us_slt_arctic_hts \
        --json docs/voices/prompt_source_training.json

SoundStorm is trained with prompts cut from the start of the utterance it continues (masking.py:
the delimiter); eval-tts and every user prompt it with another recording. For each test
utterance U of a voice (at least 6 s; --splits train for training voices, which have few): U's words after its first 3 s are resynthesized by the
bundled models (`plan_resynth`: U's own semantic tokens, so the words are the same) in the voice
of a 3 s prompt taken either from U's own start ("own") or from the start of another test
utterance V of the same voice ("other"), with the same seed. Each output is compared
(resemblyzer) with U's original audio after 3 s: the same speaker saying the same words, one
reference for both conditions. Paired by utterance: mean of other - own +- its standard error.
Beside them, the ceiling of the stages after SoundStorm: the codec's own tokens of the same
continuation (the levels SoundStorm decodes) through the same decoder, with the own-start prompt
as its voice reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.allocator import keep_freed_memory  # noqa: E402
from soundstorm.data.audio import load_audio  # noqa: E402
from soundstorm.data.manifest import read_manifest  # noqa: E402
from soundstorm.eval.speaker import SpeakerSimilarity  # noqa: E402
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline  # noqa: E402

PROMPT_SECONDS = 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--voices", nargs="+", default=["flite-rms", "flite-slt"])
    parser.add_argument("--per-voice", type=int, default=24)
    parser.add_argument("--min-seconds", type=float, default=6.0)
    parser.add_argument("--splits", nargs="+", default=["test"],
                        help="splits whose names start with one of these (training voices have few test utterances: "
                             "train works too, both conditions alike)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()

    pipeline = SpeechPipeline.from_folder(args.models)
    similarity = SpeakerSimilarity()
    entries = read_manifest(args.manifest)
    root = args.manifest.parent
    rate = pipeline.sample_rate
    cut = int(PROMPT_SECONDS * rate)
    results: dict[str, list[dict[str, float | str]]] = {}
    for name in args.voices:
        tests = [e for e in entries if e.speaker == name and e.split.startswith(tuple(args.splits)) and e.duration >= args.min_seconds]
        tests = sorted(tests, key=lambda e: e.id)[: args.per_voice + 1]
        if len(tests) < 2:
            print(f"{name}: fewer than two test utterances of at least {args.min_seconds:g} s, skipped", file=sys.stderr)
            continue
        rows = []
        for i, (entry, other) in enumerate(zip(tests, tests[1:] + tests[:1])):  # V: the next utterance
            if i == args.per_voice:
                break
            wav, _ = load_audio(root / entry.path, sample_rate=rate, resample=True)
            other_wav, _ = load_audio(root / other.path, sample_rate=rate, resample=True)
            rest = wav[cut:]
            reference = similarity.embed(rest, rate)
            row: dict[str, float | str] = {"id": entry.id, "prompt_from": other.id}
            for condition, prompt in (("own", wav[:cut]), ("other", other_wav[:cut])):
                voice = pipeline.voice(prompt, name=condition, sample_rate=rate)
                options = DecodingOptions(seed=i)
                out = pipeline.render([pipeline.plan_resynth(rest, voice, options, sample_rate=rate)])[0]
                row[condition] = float(np.dot(similarity.embed(out, rate), reference))
                if condition == "own":
                    # The ceiling: the codec's own tokens of the continuation (the levels SoundStorm
                    # decodes), through the same decoder, semantic tokens and voice reference.
                    codes, semantic = pipeline.tokens(torch.from_numpy(np.ascontiguousarray(rest))[None, None])
                    levels = len(options.steps or pipeline.default_steps)
                    tokens = pipeline.decode(codes[:, :levels], voice, semantic)
                    row["codec_tokens"] = float(np.dot(similarity.embed(tokens, rate), reference))
            rows.append(row)
            print(f"{name} {entry.id}: own {row['own']:.3f} other {row['other']:.3f} "
                  f"codec tokens {row['codec_tokens']:.3f}", file=sys.stderr)
        results[name] = rows

    print(f"\nSimilarity to the utterance's own continuation, resynthesized from its semantic tokens, "
          f"{args.models} (means +- standard errors over utterances):\n")
    print("| voice | n | prompt from its own start | from another utterance | other - own | the codec's own tokens "
          "| own - codec's tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for name, rows in results.items():
        own = np.array([r["own"] for r in rows], dtype=float)
        other = np.array([r["other"] for r in rows], dtype=float)
        ceiling = np.array([r["codec_tokens"] for r in rows], dtype=float)
        diff, gap = other - own, own - ceiling
        stderr, gap_stderr = (float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan") for d in (diff, gap))
        summary[name] = {"n": len(rows), "own": float(own.mean()), "other": float(other.mean()),
                         "difference": float(diff.mean()), "stderr": stderr,
                         "median_difference": float(statistics.median(diff)), "codec_tokens": float(ceiling.mean()),
                         "own_minus_codec_tokens": float(gap.mean()), "own_minus_codec_tokens_stderr": gap_stderr}
        print(f"| {name} | {len(rows)} | {own.mean():.3f} | {other.mean():.3f} | {diff.mean():+.3f} +- {stderr:.3f} "
              f"| {ceiling.mean():.3f} | {gap.mean():+.3f} +- {gap_stderr:.3f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"models": str(args.models), "summary": summary, "rows": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
