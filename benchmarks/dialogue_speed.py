"""The main job's speed: a two-voice dialogue through the whole pipeline (text-to-semantic,
SoundStorm, codec), in several variants side by side in one run.

    .venv/bin/python benchmarks/dialogue_speed.py --threads 2 --json docs/dialogue_speed.json
    .venv/bin/python benchmarks/dialogue_speed.py --variants auto auto:8,1,1,1,1,1,1,1
    .venv/bin/python benchmarks/dialogue_speed.py --models models/demo runs/candidate --variants auto

A variant is a --precision (auto, fp32, bf16: soundstorm/precision.py), optionally followed by
`:STEPS`, SoundStorm's iterations per level (default: the models folder's decoding.json, else
the paper's 16, 1, ...), `:GUIDANCE`, one classifier-free guidance scale or one per level
(`auto::2,1,1,1,1,1,1,1`: the default steps, guidance on the first level), and
`:T2S_TEMPERATURE:T2S_CANDIDATES` (`auto:::0.8:1`: the text-to-semantic decoding before
2026-12-05; the audio then differs, so compare real-time factors), `:SOFT`, the soft
temperature of the finer levels (`auto:::::0`: hard codes; default: decoding.json's) and
`:REFRESH`, how often SoundStorm runs the voice prompt (`auto::::::once`; docs/prompt_reuse.md). The bundled models
(or --models) speak a fixed script of about 30 s (the issue's target) in two bundled voices,
with the same seed for every run. Several --models folders run every variant each (rows
FOLDER/VARIANT), to time two sets of models side by side. The variants are interleaved --repeats times so that
machine noise falls on all alike; the table gives medians, the real-time factor (seconds of
compute per second of audio) and the seconds spent in each stage. Run it alone: any other
load on a 2-core machine distorts every figure.
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

from soundstorm.allocator import keep_freed_memory  # noqa: E402
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
    parser.add_argument("--models", type=Path, nargs="+", default=[ROOT / "models" / "demo"],
                        help="models folders (several: each runs every variant)")
    parser.add_argument("--voices", nargs=2, default=["flite-slt", "flite-awb"], help="two voices of MODELS/voices")
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16", "auto"],
                        help="PRECISION[:STEPS], e.g. auto or auto:8,1,1,1,1,1,1,1 (the first is the speed-up's base)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the soundstorm command does (SOUNDSTORM_MALLOC=default: glibc's own)

    if len(set(map(str, args.models))) < len(args.models):
        parser.error("--models names one folder twice")
    # Rows are FOLDER/VARIANT, by the folder's name, or its whole path where two names are alike
    # (models/demo against another checkout's models/demo), so that no row overwrites another.
    names = [folder.name for folder in args.models]
    folder_names = {folder: str(folder) if names.count(folder.name) > 1 else folder.name for folder in args.models}

    def label(folder: Path, variant: str) -> str:
        return f"{folder_names[folder]}/{variant}" if len(args.models) > 1 else variant

    parsed = {variant: parse_variant(variant) for variant in args.variants}
    variants = {label(folder, variant): parsed[variant] for folder in args.models for variant in args.variants}
    pipelines = {label(folder, variant): SpeechPipeline.from_folder(folder, precision=parsed[variant][0])
                 for folder in args.models for variant in args.variants}
    first = pipelines[next(iter(pipelines))]
    voices = {name: first.voice(args.models[0] / "voices" / f"{voice}.wav") for name, voice in zip("AB", args.voices)}
    options = {variant: DecodingOptions(seed=0, steps=steps, guidance_scale=guidance, **t2s)  # type: ignore[arg-type]
               for variant, (_, steps, guidance, t2s) in variants.items()}
    for variant, pipeline in pipelines.items():  # warm-up: first-call allocations are not the speed
        pipeline.dialogue(SCRIPT[:1], voices, options[variant])

    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
    for _ in range(args.repeats):
        for variant, pipeline in pipelines.items():
            start = time.perf_counter()
            wav = pipeline.dialogue(SCRIPT, voices, options[variant])
            seconds = time.perf_counter() - start
            runs[variant].append({"seconds": seconds, "audio_seconds": len(wav) / pipeline.sample_rate,
                                  **{f"stage_{k}": v for k, v in pipeline.timing.stages.items()}})

    rows = []
    for variant, results in runs.items():
        median = {key: statistics.median(r[key] for r in results) for key in results[0]}
        pipeline = pipelines[variant]
        rows.append({"variant": variant, "soundstorm_precision": pipeline.precision,
                     "t2s_precision": pipeline.t2s_description, "steps": variants[variant][1] or pipeline.default_steps,
                     "guidance_scale": variants[variant][2] if variants[variant][2] is not None
                     else pipeline.default_guidance_scale,
                     "t2s_temperature": options[variant].t2s_temperature,
                     "t2s_candidates": options[variant].t2s_candidates,
                     "soft_temperature": options[variant].soft_temperature if options[variant].soft_temperature
                     is not None else pipeline.default_soft_temperature,
                     "prompt_refresh": options[variant].prompt_refresh or pipeline.default_prompt_refresh, **median,
                     "rtf": median["seconds"] / median["audio_seconds"]})
    base = rows[0]["seconds"]
    print(f"Dialogue of {len(SCRIPT)} turns, {args.threads} torch threads, medians of {args.repeats} "
          f"(torch {torch.__version__}, {platform.processor() or platform.machine()}):\n")
    print("| variant | SoundStorm / text-to-semantic precision | audio (s) | wall (s) | RTF | text-to-semantic (s) | "
          "SoundStorm (s) | codec (s) | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['soundstorm_precision']} / {row['t2s_precision']} | {row['audio_seconds']:.1f} | {row['seconds']:.2f} | {row['rtf']:.3f} | "
              f"{row.get('stage_text_to_semantic', 0):.2f} | {row.get('stage_soundstorm', 0):.2f} | "
              f"{row.get('stage_codec', 0):.2f} | {base / row['seconds']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"models": [str(folder) for folder in args.models], "threads": args.threads,
                                         "repeats": args.repeats, "rows": rows,
                                         "runs": runs, "torch": torch.__version__}, indent=2) + "\n")
    return 0


def parse_variant(variant: str) -> tuple[str, list[int] | None, float | list[float] | None, dict[str, float | int | str]]:
    """"auto" -> ("auto", None, None, {}): the models folder's defaults (decoding.json);
    "auto:8,1,1" -> ("auto", [8, 1, 1], None, {}); "auto::2,1,1" -> ("auto", None, [2.0, 1.0, 1.0], {});
    "auto::2" -> ("auto", None, 2.0, {}); "auto:::0.8:1" -> the text-to-semantic model at temperature
    0.8 with one candidate ({"t2s_temperature": 0.8, "t2s_candidates": 1}); "auto:::::0" -> hard
    codes ({"soft_temperature": 0.0}); "auto::::::once" -> the voice prompt run once
    ({"prompt_refresh": "once"})."""
    precision, steps, guidance, temperature, candidates, soft, refresh = (variant.split(":") + [""] * 6)[:7]
    try:
        scales = [float(g) for g in guidance.split(",")] if guidance else None
        guidance_scale = None if scales is None else scales[0] if len(scales) == 1 else scales
        t2s: dict[str, float | int | str] = {}
        if temperature:
            t2s["t2s_temperature"] = float(temperature)
        if candidates:
            t2s["t2s_candidates"] = int(candidates)
        if soft:
            t2s["soft_temperature"] = float(soft)
        if refresh:
            t2s["prompt_refresh"] = refresh
        return precision, [int(n) for n in steps.split(",")] if steps else None, guidance_scale, t2s
    except ValueError:
        raise SystemExit(f"a variant is PRECISION[:STEPS[:GUIDANCE[:T2S_TEMPERATURE[:T2S_CANDIDATES[:SOFT[:REFRESH]]]]]] "
                         f"like auto:8,1,1,1,1,1,1,1 or auto::2,1,1,1,1,1,1,1 or auto:::0.8:1 or auto:::::0 or auto::::::once, "
                         f"got {variant!r}") from None

if __name__ == "__main__":
    raise SystemExit(main())
