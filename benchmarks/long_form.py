"""Long-form decoding: a minute of speech resynthesized in one SoundStorm pass, or window by window.

    .venv/bin/python benchmarks/long_form.py --manifest data/synth/manifest.jsonl --threads 2 \
        --json docs/long_form.json

For each voice, held-out sentences of the corpus (test and valid splits; a voice held out of
training: all of its own) are joined, 0.25 s apart, into one recording of about --seconds; a
sentence of the voice that is not in it is the 3 s voice prompt. The recording is resynthesized
(`SpeechPipeline.resynth`: its semantic tokens, the bundled models) in each mode:

- `W:C` decodes windows of at most W seconds of new audio, each after the voice prompt and the
  last C seconds of the window before (DecodingOptions.window_seconds, window_context_seconds;
  C left out: the pipeline's default); `0` decodes the whole recording in one pass, as before
  long-form decoding existed;
- `each` resynthesizes every sentence on its own (the short inputs SoundStorm is trained on):
  the reference the long forms are read against.

The output is frame-aligned with the input, so it is cut at the sentences' boundaries and each
piece is scored: CER (pocketsphinx, against the sentence's text) and speaker similarity to the
prompt (resemblyzer). Modes are compared paired by sentence with the first mode (mean difference
+- standard error), training voices and held-out ones apart.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.allocator import keep_freed_memory  # noqa: E402
from soundstorm.data.manifest import read_manifest  # noqa: E402
from soundstorm.eval.asr import Recognizer, error_rates  # noqa: E402
from soundstorm.eval.codec_metrics import MEL_BANDS, mel_filterbank  # noqa: E402
from soundstorm.eval.speaker import SpeakerSimilarity  # noqa: E402
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline  # noqa: E402

GAP_SECONDS = 0.25
HELD_OUT_SPLIT = "test-unseen-speaker"


def mode_options(mode: str, seed: int) -> DecodingOptions | None:
    """DecodingOptions of a mode; None for `each`."""
    if mode == "each":
        return None
    window, _, context = mode.partition(":")
    return DecodingOptions(seed=seed, window_seconds=float(window),
                           window_context_seconds=float(context) if context else None)


def flux(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Spectral flux [F]: the distance between consecutive 10 ms log-mel frames, its largest within
    20 ms of each frame (a join is a step between two frames)."""
    hop, n_fft = sample_rate // 100, 1024
    spectrum = torch.stft(torch.from_numpy(wav).double(), n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64),
                          return_complex=True).abs() ** 2  # [n_fft / 2 + 1, F]
    mel = (mel_filterbank(sample_rate, n_fft, MEL_BANDS) @ spectrum).clamp_min(1e-10).log10()  # [M, F]
    steps = (mel[:, 1:] - mel[:, :-1]).norm(dim=0)  # [F - 1]
    return torch.nn.functional.max_pool1d(steps[None, None], 5, 1, padding=2)[0, 0].numpy()


def seam_percentile(wav: np.ndarray, sample_rate: int, joins: list[int]) -> float:
    """Mean percentile, among all of wav's frames, of the spectral flux at the samples `joins`:
    about 50 where nothing changes there, near 100 where every join is an audible step."""
    values = flux(wav, sample_rate)
    frames = [min(j * 100 // sample_rate, len(values) - 1) for j in joins]
    return float(np.mean([100.0 * (values < values[f]).mean() for f in frames]))


def paired(a: list[float], b: list[float]) -> str:
    differences = [y - x for x, y in zip(a, b)]
    if len(differences) < 2:
        return "n/a"
    return f"{statistics.mean(differences):+.3f} +- {statistics.stdev(differences) / math.sqrt(len(differences)):.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "data" / "synth" / "manifest.jsonl")
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--voices", nargs="+", default=["flite-slt", "flite-awb", "festival-cmu_us_slt_arctic_hts",
                                                         "flite-rms"])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each voice's joined recording")
    parser.add_argument("--modes", nargs="+", default=["0", "6:1", "6:0", "each"],
                        help="W:C (windows of W s after C s of the one before), 0 (one pass) or each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="time each mode this many times (medians)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()

    entries = read_manifest(args.manifest)
    root = args.manifest.parent
    pipeline = SpeechPipeline.from_folder(args.models)
    sample_rate = pipeline.sample_rate
    asr, similarity = Recognizer(), SpeakerSimilarity()
    rows: dict[str, list[dict]] = {mode: [] for mode in args.modes}  # one row per sentence
    walls: dict[str, float] = {mode: 0.0 for mode in args.modes}
    seams: dict[str, list[float]] = {mode: [] for mode in args.modes}  # per run: seam_percentile
    for speaker in args.voices:
        own = [e for e in entries if e.speaker == speaker and e.split in ("test", "valid", HELD_OUT_SPLIT)]
        if len(own) < 2:
            raise SystemExit(f"{args.manifest} has fewer than 2 held-out sentences of {speaker}")
        group = "held-out" if own[0].split == HELD_OUT_SPLIT else "training"
        prompt_entry, chosen, total = own[0], [], 0.0
        for entry in own[1:]:
            if total >= args.seconds:
                break
            chosen.append(entry)
            total += entry.duration + GAP_SECONDS
        prompt_wav, rate = sf.read(root / prompt_entry.path, dtype="float32")
        voice = pipeline.voice(root / prompt_entry.path)
        pieces, bounds, position = [], [], 0
        for entry in chosen:
            wav, rate = sf.read(root / entry.path, dtype="float32")
            if rate != sample_rate:
                raise SystemExit(f"{entry.path} is at {rate} Hz, the models at {sample_rate}")
            bounds.append((position, position + len(wav)))
            pieces += [wav, np.zeros(round(GAP_SECONDS * sample_rate), np.float32)]
            position += len(wav) + len(pieces[-1])
        recording = np.concatenate(pieces)
        results: dict[str, list[np.ndarray]] = {}
        joined: dict[str, tuple[np.ndarray, list[int]]] = {}  # mode -> its output and where its windows meet
        seconds: dict[str, list[float]] = {mode: [] for mode in args.modes}
        samples = sample_rate * pipeline.ratio / pipeline.codec.frame_rate  # per semantic token
        for _ in range(args.repeats):  # the modes interleaved, so that machine noise falls on all alike
            for mode in args.modes:
                options = mode_options(mode, args.seed)
                start = time.perf_counter()
                if options is None:
                    outputs = pipeline.render([pipeline.plan_resynth(root / e.path, voice,
                                                                     DecodingOptions(seed=args.seed)) for e in chosen])
                else:
                    plan = pipeline.plan_resynth(recording, voice, options, sample_rate=sample_rate)
                    out = pipeline.render([plan])[0]
                    outputs = [out[a:b] for a, b in bounds]
                seconds[mode].append(time.perf_counter() - start)
                results[mode] = outputs  # the same seed every time: the same audio
                if options is not None:
                    # Where the windows meet, and where the default's would (one pass: the control).
                    spans = pipeline.window_plan(plan.segments[0], options if options.window_seconds else
                                                 DecodingOptions())
                    joined[mode] = (out, [round(first * samples) for first, _, _ in spans[1:]])
        for mode, (out, joins) in joined.items():
            seams[mode].append(seam_percentile(out, sample_rate, joins))
        for mode in args.modes:
            walls[mode] += statistics.median(seconds[mode])
            for entry, output, (first, _) in zip(chosen, results[mode], bounds):
                hypothesis = asr.transcribe(output, sample_rate)
                rows[mode].append({"speaker": speaker, "group": group, "id": entry.id, "text": entry.text,
                                   "hypothesis": hypothesis, "start": first / sample_rate,
                                   "cer": error_rates([entry.text], [hypothesis]).cer,
                                   "similarity": similarity(output, prompt_wav, sample_rate)})
            print(f"{speaker} ({total:.0f} s, {len(chosen)} sentences) {mode}: {statistics.median(seconds[mode]):.1f} s",
                  flush=True)

    base = args.modes[0]
    lines = ["| mode | group | sentences | CER | similarity | CER vs " + base + " | similarity vs " + base + " |",
             "|---|---|---:|---:|---:|---:|---:|"]
    summary = []
    for mode in args.modes:
        for group in ("training", "held-out"):
            mine = [r for r in rows[mode] if r["group"] == group]
            if not mine:
                continue
            theirs = [r for r in rows[base] if r["group"] == group]
            cer = error_rates([r["text"] for r in mine], [r["hypothesis"] for r in mine]).cer
            sim = statistics.mean(r["similarity"] for r in mine)
            summary.append({"mode": mode, "group": group, "sentences": len(mine), "cer": cer, "similarity": sim})
            lines.append(f"| {mode} | {group} | {len(mine)} | {cer:.3f} | {sim:.3f} | "
                         f"{paired([r['cer'] for r in theirs], [r['cer'] for r in mine])} | "
                         f"{paired([r['similarity'] for r in theirs], [r['similarity'] for r in mine])} |")
    table = "\n".join(lines)
    print(table)
    print("Resynthesis wall seconds per mode (semantic tokens to audio, medians, summed over the voices): "
          + ", ".join(f"{m} {w:.1f}" for m, w in walls.items()))
    print("Spectral flux where windows meet, mean percentile (one pass: where the default's would): "
          + ", ".join(f"{m} {statistics.mean(v):.0f}" for m, v in seams.items() if v))
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "torch": torch.__version__,
                                         "summary": summary, "table": table, "wall_seconds": walls,
                                         "seam_percentiles": seams, "rows": rows},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
