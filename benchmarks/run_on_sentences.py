"""Run-on sentences: read by the text-to-semantic model whole, or in clauses (SpeechPipeline.pieces).

    .venv/bin/python benchmarks/run_on_sentences.py --texts 20 --threads 2 --json docs/run_on_sentences.json

Each text joins three held-out sentences of the corpus into one sentence ("A, and b, and c."),
30-45 words: longer than any sentence the bundled text-to-semantic model was trained on (the
corpus keeps sentences of at most 20 words). It is spoken by `SpeechPipeline.tts` in a bundled
voice with the pipeline's max_words at 20 (now: cut after the clause marks nearest the middle)
and at 1000 (before: read whole), the same seed for both, and scored against the text by
pocketsphinx (WER, CER) and resemblyzer (similarity to the prompt); paired by text.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.allocator import keep_freed_memory  # noqa: E402
from soundstorm.data.manifest import read_manifest  # noqa: E402
from soundstorm.eval.asr import Recognizer, error_rates  # noqa: E402
from soundstorm.eval.speaker import SpeakerSimilarity  # noqa: E402
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline  # noqa: E402

SETTINGS = {"clauses (max_words 20)": 20, "whole (max_words 1000)": 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "data" / "synth" / "manifest.jsonl")
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--voice", default="flite-slt", help="a voice of MODELS/voices")
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()

    sentences = [e.text for e in read_manifest(args.manifest) if e.split == "test" and e.text]
    texts = []
    for i in range(0, 3 * args.texts, 3):
        parts = [t.rstrip(".!?") for t in sentences[i: i + 3]]
        texts.append(", and ".join(p if k == 0 else p[0].lower() + p[1:] for k, p in enumerate(parts)) + ".")
    pipeline = SpeechPipeline.from_folder(args.models)
    prompt_path = args.models / "voices" / f"{args.voice}.wav"
    voice = pipeline.voice(prompt_path)
    prompt, rate = sf.read(prompt_path, dtype="float32")
    asr, similarity = Recognizer(), SpeakerSimilarity()
    rows: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for n, text in enumerate(texts):
        for name, max_words in SETTINGS.items():
            pipeline.max_words = max_words
            wav = pipeline.tts(text, voice, DecodingOptions(seed=n))
            hypothesis = asr.transcribe(wav, pipeline.sample_rate)
            rates = error_rates([text], [hypothesis])
            rows[name].append({"text": text, "words": len(text.split()), "pieces": len(pipeline.pieces(text)),
                               "hypothesis": hypothesis, "wer": rates.wer, "cer": rates.cer,
                               "similarity": similarity(wav, prompt, rate), "audio_seconds": len(wav) / pipeline.sample_rate})
        print(f"text {n + 1}/{len(texts)}: " + ", ".join(f"{name} CER {rows[name][-1]['cer']:.3f}" for name in SETTINGS),
              flush=True)

    base = next(iter(SETTINGS))
    lines = [f"| reading | texts | words | WER | CER | similarity | paired with {base}: WER | CER | similarity |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in SETTINGS:
        mine, theirs = rows[name], rows[base]
        corpus = error_rates([r["text"] for r in mine], [r["hypothesis"] for r in mine])
        cells = []
        for key in ("wer", "cer", "similarity"):
            d = [a[key] - b[key] for a, b in zip(mine, theirs)]
            cells.append(f"{statistics.mean(d):+.3f} +- {statistics.stdev(d) / math.sqrt(len(d)):.3f}" if name != base else "")
        lines.append(f"| {name} | {len(mine)} | {sum(r['words'] for r in mine)} | {corpus.wer:.3f} | {corpus.cer:.3f} | "
                     f"{statistics.mean(r['similarity'] for r in mine):.3f} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "table": table, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
