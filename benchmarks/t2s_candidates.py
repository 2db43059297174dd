"""How well the text-to-semantic model's tokens spell their text, by sampling settings and by
the number of candidates it draws and chooses among (soundstorm/text/phone_score.py).

    .venv/bin/python benchmarks/t2s_candidates.py --manifest data/synth/manifest.jsonl --sentences 144 \
        --settings 0.8:1 0.8:4 0.5:1 0.5:4 --threads 2 --json docs/t2s_candidates.json

For held-out sentences of the manifest (the test splits' transcripts of flite and festival voices), each setting
TEMPERATURE:CANDIDATES[:TOP_K] decodes every sentence the way the pipeline does
(`SpeechPipeline.text_to_semantic`: float16 step weights, one seed per sentence, the same for
every setting) and reports the phone error rate of the tokens against the text's phones (each
token's likeliest phone, repeats merged: `PhoneScorer.phone_errors`), the share of sentences
with more than 20% phone errors (the garbled draws), the mean alignment score, and the median
time per sentence. The tokens of the synthesizer's own audio of the same sentences are the
reference: what the semantic tokenizer hears in speech that says the text (by training and
held-out voices: it hears the voices it was trained on far better). No SoundStorm, codec
or recognizer runs, so a setting costs seconds of one thread per sentence, not minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.data.audio import load_audio  # noqa: E402
from soundstorm.data.manifest import read_manifest  # noqa: E402
from soundstorm.eval.tts_eval import family  # noqa: E402
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline  # noqa: E402

GARBLED = 0.2  # a sentence whose tokens miss more than this share of its phones


def parse_setting(text: str) -> DecodingOptions:
    parts = text.split(":")
    if not 2 <= len(parts) <= 3:
        raise SystemExit(f"a setting is TEMPERATURE:CANDIDATES[:TOP_K], got {text!r}")
    top_k = int(parts[2]) if len(parts) == 3 else DecodingOptions.t2s_top_k
    return DecodingOptions(t2s_temperature=float(parts[0]), t2s_candidates=int(parts[1]), t2s_top_k=top_k or None)


def summary(errors: list[tuple[int, int]], scores: list[float], seconds: list[float]) -> dict[str, float]:
    phones = sum(n for _, n in errors)
    return {"phone_error_rate": sum(e for e, _ in errors) / phones,
            "garbled": float(np.mean([e / n > GARBLED for e, n in errors])),
            "score": float(np.mean(scores)), "seconds": statistics.median(seconds) if seconds else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--sentences", type=int, default=144)
    parser.add_argument("--families", nargs="+", default=["flite", "festival"],
                        help="voices whose audio is the reference (default flite festival: the content encoder "
                             "hears espeak-ng's formant voices poorly)")
    parser.add_argument("--settings", nargs="+", default=["0.8:1", "0.8:4"], help="TEMPERATURE:CANDIDATES[:TOP_K]")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipeline = SpeechPipeline.from_folder(args.models)
    scorer = pipeline.phone_scorer
    if scorer is None:
        raise SystemExit(f"{args.models}: its semantic tokens carry no phone classes to score")
    entries = [e for e in read_manifest(args.manifest) if e.split in ("test", "test-unseen-speaker") and e.text
               and family(e.speaker) in args.families]
    chosen = np.random.default_rng(0).permutation(len(entries))[: args.sentences]
    entries = [entries[i] for i in sorted(chosen)]
    settings = {name: parse_setting(name) for name in args.settings}

    reference_errors, reference_scores, seen = [], [], []
    for entry in entries:
        wav, _ = load_audio(entry.audio_path(args.manifest.parent), sample_rate=pipeline.semantic.sample_rate,
                            resample=True, downmix=True)
        with torch.inference_mode():
            tokens, lengths = pipeline.semantic.tokenize(torch.from_numpy(wav)[None, None])
        tokens = tokens[0, : int(lengths[0])]
        reference_errors.append(scorer.phone_errors(tokens, entry.text or ""))
        reference_scores.append(scorer.score(tokens, entry.text or ""))
        seen.append(entry.split == "test")
    # The tokenizer hears a voice it was trained on far better than one it never heard.
    results = {f"synthesizer's audio, {name} voices ({sum(s == wanted for s in seen)} sentences)": summary(
        [e for e, s in zip(reference_errors, seen) if s == wanted],
        [c for c, s in zip(reference_scores, seen) if s == wanted], [])
        for name, wanted in (("training", True), ("held-out", False)) if wanted in seen}
    for name, options in settings.items():
        errors, scores, seconds = [], [], []
        for index, entry in enumerate(entries):
            start = time.perf_counter()
            tokens = pipeline.text_to_semantic(entry.text or "", options=replace(options, seed=index))
            seconds.append(time.perf_counter() - start)
            errors.append(scorer.phone_errors(tokens, entry.text or ""))
            scores.append(scorer.score(tokens, entry.text or ""))
        results[name] = summary(errors, scores, seconds)
        print(f"{name}: {results[name]}", file=sys.stderr)

    lines = [f"{len(entries)} held-out sentences, {args.threads} thread(s); setting = temperature:candidates[:top-k]", "",
             "| tokens | phone error rate | sentences > 20% phone errors | mean alignment score | median s / sentence |",
             "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['phone_error_rate']:.3f} | {r['garbled']:.3f} | {r['score']:.3f} | "
                     f"{r['seconds']:.2f} |")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "sentences": len(entries),
                                         "threads": args.threads, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
