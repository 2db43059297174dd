"""The main job's speed: a two-voice dialogue through the whole pipeline (text-to-semantic,
SoundStorm, codec), float32 against bf16 autocast, side by side in one run.

    .venv/bin/python benchmarks/dialogue_speed.py --threads 2 --json docs/dialogue_speed.json

The bundled models (or --models) speak a fixed script of about 30 s (the issue's target) in two
bundled voices, with the same seed for every run. The precisions are interleaved --repeats times
so that machine noise falls on both alike; the table gives medians, the real-time factor
(seconds of compute per second of audio) and the seconds spent in each stage. Run it alone: any
other load on a 2-core machine distorts every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline  # noqa: E402

SCRIPT = [
    ("A", "Good morning. Did you sleep well last night?"),
    ("B", "Not really. The wind kept rattling the windows until dawn."),
    ("A", "That storm was loud. Our garden fence fell over."),
    ("B", "Then we should fix it before the rain comes back."),
    ("A", "I will bring the tools after lunch, if you make the coffee."),
    ("B", "It is a deal. Strong coffee, and a long afternoon of work."),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--voices", nargs=2, default=["flite-slt", "flite-awb"], help="two voices of MODELS/voices")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipelines = {p: SpeechPipeline.from_folder(args.models, precision=p) for p in args.precisions}
    first = pipelines[args.precisions[0]]
    voices = {name: first.voice(args.models / "voices" / f"{voice}.wav") for name, voice in zip("AB", args.voices)}
    options = DecodingOptions(seed=0)
    for pipeline in pipelines.values():  # warm-up: first-call allocations are not the speed
        pipeline.dialogue(SCRIPT[:1], voices, options)

    runs: dict[str, list[dict[str, float]]] = {p: [] for p in args.precisions}
    for _ in range(args.repeats):
        for precision, pipeline in pipelines.items():
            start = time.perf_counter()
            wav = pipeline.dialogue(SCRIPT, voices, options)
            seconds = time.perf_counter() - start
            runs[precision].append({"seconds": seconds, "audio_seconds": len(wav) / pipeline.sample_rate,
                                    **{f"stage_{k}": v for k, v in pipeline.timing.stages.items()}})

    rows = []
    for precision, results in runs.items():
        median = {key: statistics.median(r[key] for r in results) for key in results[0]}
        rows.append({"precision": precision, **median, "rtf": median["seconds"] / median["audio_seconds"]})
    base = rows[0]["seconds"]
    print(f"Dialogue of {len(SCRIPT)} turns, {args.threads} torch threads, medians of {args.repeats} "
          f"(torch {torch.__version__}, {platform.processor() or platform.machine()}):\n")
    print("| precision | audio (s) | wall (s) | RTF | text-to-semantic (s) | SoundStorm (s) | codec (s) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['precision']} | {row['audio_seconds']:.1f} | {row['seconds']:.2f} | {row['rtf']:.3f} | "
              f"{row.get('stage_text_to_semantic', 0):.2f} | {row.get('stage_soundstorm', 0):.2f} | "
              f"{row.get('stage_codec', 0):.2f} | {base / row['seconds']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "rows": rows,
                                         "runs": runs, "torch": torch.__version__}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
