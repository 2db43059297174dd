"""The post-filter towards the voice prompt's long-term spectrum (soundstorm/text/spectrum_match.py):
how much of the difference to remove, and whether what it gains is the voice or the metric.

    .venv/bin/python benchmarks/spectrum_match.py --per-group 36 --threads 2 --json docs/spectrum_match.json

eval-tts's held-out sentences and prompts (the first 3 s of another utterance of the same speaker,
flite and festival voices; the same sentence seeds), each spoken once by the models folder's
pipeline with the filter off; then the same audio filtered at each --strengths. Scored against:

- the prompt: resemblyzer similarity, as eval-tts scores it (the filter's own target);
- the synthesizer's own recording of the same sentence, which the filter never saw: resemblyzer
  similarity, and the distance between its long-term spectrum and the output's (dB, a third of
  an octave smoothed, 200 Hz-7 kHz). If the filter only copied the prompt's 3 s, these would not
  move; if it moves the output towards the speaker, they follow the prompt's;
- the words: pocketsphinx WER and CER against the text.

Differences from strength 0 are paired by sentence (mean +- standard error).

eval-tts prompts every sentence of a speaker from the same recording, so its held-out figures
rest on one prompt. `--sentences fresh` checks the filter where nothing was chosen: the held-out
sentences eval-tts does not use (the training flite and festival voices have almost none others:
theirs are eval-tts's again), espeak-ng's voices too (the unseen espeak-en+f4 and the trained ones;
their WER means nothing, their similarity does), and for each sentence its own prompt, the first
3 s of a random other utterance of its speaker:

    .venv/bin/python benchmarks/spectrum_match.py --sentences fresh --per-group 20 --strengths 0.5 1 \
        --threads 2 --json docs/spectrum_match_fresh.json

`--task resynth` checks voice conversion (`soundstorm resynth`): each chosen sentence's speaker
is the target, its prompt the voice, and the recording converted is a chosen sentence of another
speaker (a different one for each target); the words are scored against that recording's text, the voice against the
target's prompt and against the target's own recording of the chosen sentence:

    .venv/bin/python benchmarks/spectrum_match.py --task resynth --per-group 24 --strengths 0.5 \
        --threads 2 --json docs/spectrum_match_resynth.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.allocator import keep_freed_memory  # noqa: E402
from soundstorm.atomic import atomic_write_text  # noqa: E402
from soundstorm.data.audio import load_audio  # noqa: E402
from soundstorm.data.manifest import ManifestEntry, read_manifest  # noqa: E402
from soundstorm.eval.asr import Recognizer, error_rates  # noqa: E402
from soundstorm.eval.speaker import SpeakerSimilarity  # noqa: E402
from soundstorm.eval.speech_eval import GROUPS, choose  # noqa: E402
from soundstorm.eval.tts_eval import family  # noqa: E402
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline  # noqa: E402
from soundstorm.text.spectrum_match import long_term_spectrum, match_spectrum, smooth  # noqa: E402

BAND_HZ = (200.0, 7000.0)


def spectrum_distance(a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
    """Mean absolute difference (dB) of two recordings' smoothed long-term spectra in BAND_HZ,
    each spectrum level-normalized first (a louder recording is not another voice)."""
    sa, sb = (smooth(long_term_spectrum([x], sample_rate), sample_rate) for x in (a, b))  # type: ignore[arg-type]
    freqs = np.linspace(0, sample_rate / 2, len(sa))
    band = (freqs > BAND_HZ[0]) & (freqs < BAND_HZ[1])
    difference = (sa - sb)[band]
    return float(np.mean(np.abs(difference - difference.mean())))


def fresh_pairs(entries: list[ManifestEntry], exclude: set[str], per_group: int,
                prompt_seconds: float) -> list[tuple[ManifestEntry, ManifestEntry, str]]:
    """(sentence, prompt, group) triples: per_group test sentences of each (split, voice family)
    not in exclude, each with a random other utterance of its speaker of at least prompt_seconds."""
    rng = np.random.default_rng(1)
    prompts: dict[str, list[ManifestEntry]] = {}
    for entry in entries:
        if entry.duration >= prompt_seconds:
            prompts.setdefault(entry.speaker, []).append(entry)
    triples = []
    for split, name in GROUPS.items():
        for voices in ("flite", "festival", "espeak"):
            candidates = [e for e in entries if e.split == split and e.text and e.id not in exclude
                          and family(e.speaker) == voices and len(prompts.get(e.speaker, [])) > 1]
            for i in sorted(rng.permutation(len(candidates))[:per_group]):
                entry = candidates[i]
                others = [p for p in prompts[entry.speaker] if p.id != entry.id]
                triples.append((entry, others[int(rng.integers(len(others)))], f"{name}, {voices}"))
    return triples


def paired(values: list[float], base: list[float]) -> tuple[float, float]:
    d = [v - b for v, b in zip(values, base)]
    return statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "data" / "synth" / "manifest.jsonl")
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--per-group", type=int, default=36, help="sentences per voice group")
    parser.add_argument("--task", choices=("tts", "resynth"), default="tts",
                        help="speak each sentence from its text, or (resynth) convert the next other speaker's "
                             "sentence into its voice, scored against that sentence's text")
    parser.add_argument("--sentences", choices=("eval-tts", "fresh"), default="eval-tts",
                        help="eval-tts's sentences and prompts, or others, each with a prompt of its own")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()

    pipeline = SpeechPipeline.from_folder(args.models, precision=args.precision)
    entries = read_manifest(args.manifest)
    root = args.manifest.parent
    pairs = choose(entries, ("flite", "festival"), 72, 3.0)  # eval-tts's 72 a group: its seeds and prompts
    options = DecodingOptions(spectrum_match=0.0)
    sr = pipeline.sample_rate
    asr, similarity = Recognizer(), SpeakerSimilarity()
    strengths = [0.0] + [s for s in args.strengths if s != 0.0]
    chosen = []  # (seed index, sentence, prompt, group)
    if args.sentences == "eval-tts":
        counts: dict[str, int] = {}
        for index, (entry, prompt_entry) in enumerate(pairs):
            group = GROUPS[entry.split or ""]
            if counts.get(group, 0) < args.per_group:
                counts[group] = counts.get(group, 0) + 1
                chosen.append((index, entry, prompt_entry, group))
    else:
        # The held-out voices' sentences are new; the training flite and festival voices have few test
        # sentences besides eval-tts's, so theirs are eval-tts's again, with prompts of their own.
        triples = fresh_pairs(entries, {entry.id for entry, _ in pairs if entry.split != "test"}, args.per_group, 3.0)
        chosen = [(len(pairs) + n, entry, prompt_entry, group) for n, (entry, prompt_entry, group) in enumerate(triples)]
    scores: list[dict] = []
    for position, (index, entry, prompt_entry, group) in enumerate(tqdm(chosen, unit="utt",
                                                                        disable=not sys.stderr.isatty())):
        reference, _ = load_audio(entry.audio_path(root), sample_rate=sr, resample=True, downmix=True)
        prompt, _ = load_audio(prompt_entry.audio_path(root), sample_rate=sr, resample=True, downmix=True)
        prompt = prompt[: 3 * sr]
        voice = pipeline.voice(prompt, name=prompt_entry.speaker, sample_rate=sr)
        sentence = replace(options, seed=index)
        text = entry.text or ""
        if args.task == "tts":
            wav = pipeline.render([pipeline.plan_tts(text, voice, sentence)])[0]
        else:  # voice conversion: another speaker's sentence in this voice, scored against that sentence's text
            others = [e for _, e, _, _ in chosen if e.speaker != entry.speaker]
            source_entry = others[position % len(others)]  # a different source for each target sentence
            source, _ = load_audio(source_entry.audio_path(root), sample_rate=sr, resample=True, downmix=True)
            wav = pipeline.render([pipeline.plan_resynth(source, voice, sentence, sample_rate=sr)])[0]
            text = source_entry.text or ""
        row: dict = {"id": entry.id, "speaker": entry.speaker, "group": group, "text": text, "by_strength": {}}
        for strength in strengths:
            out = match_spectrum([wav], prompt, sr, strength)[0]
            row["by_strength"][str(strength)] = {
                "similarity_prompt": similarity(prompt, out, sr), "similarity_reference": similarity(reference, out, sr),
                "spectrum_distance_reference": spectrum_distance(reference, out, sr),
                "spectrum_distance_prompt": spectrum_distance(prompt, out, sr), "hypothesis": asr.transcribe(out, sr)}
        scores.append(row)

    table = []
    for group in sorted({row["group"] for row in scores}):
        members = [row for row in scores if row["group"] == group]

        def column(strength: float, key: str) -> list[float]:
            return [row["by_strength"][str(strength)][key] for row in members]

        texts = [row["text"] for row in members]
        for strength in strengths:
            rates = error_rates(texts, column(strength, "hypothesis"))  # type: ignore[arg-type]
            entry = {"group": group, "strength": strength, "n": len(members), "wer": rates.wer, "cer": rates.cer}
            for key in ("similarity_prompt", "similarity_reference", "spectrum_distance_reference",
                        "spectrum_distance_prompt"):
                entry[key] = statistics.fmean(column(strength, key))
                entry[key + "_paired"] = paired(column(strength, key), column(0.0, key))
            table.append(entry)

    lines = ["| voices | strength | n | similarity to the prompt | to the sentence's own recording | "
             "spectrum distance to that recording (dB) | WER | CER |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for e in table:
        def cell(key: str, digits: int = 3) -> str:
            mean, (d, se) = e[key], e[key + "_paired"]
            return f"{mean:.{digits}f}" + ("" if e["strength"] == 0 else f" ({d:+.{digits}f} +- {se:.{digits}f})")
        lines.append(f"| {e['group']} | {e['strength']:g} | {e['n']} | {cell('similarity_prompt')} | "
                     f"{cell('similarity_reference')} | {cell('spectrum_distance_reference', 2)} | {e['wer']:.3f} | "
                     f"{e['cer']:.3f} |")
    print("\n".join(lines))
    if args.json:
        atomic_write_text(args.json, json.dumps({"command": " ".join(sys.argv), "task": args.task,
                                                 "sentences": args.sentences,
                                                 "threads": args.threads,
                                         "precision": args.precision, "table": table, "utterances": scores},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
