"""How many padded frames a SoundStorm batch should hold: the dialogue's SoundStorm stage at
several frame budgets (SpeechPipeline.batch_frames), side by side in one run.

    .venv/bin/python benchmarks/batch_frames.py --threads 2 --budgets 0 2400 1200 800 400 --json docs/batch_frames.json

The script of benchmarks/dialogue_speed.py goes through the text-to-semantic model once; its six
turns (each with its speaker's 3 s prompt) are then decoded by SoundStorm under every budget,
the budgets interleaved --repeats times, and the medians reported. Budget 0 means none: one
batch of every turn (up to render's max_batch of 8). A turn samples from its own random stream
in any batch, so the budgets differ only by float rounding (padding changes the shapes of the
matrix products, and bf16 rounds coarsely), which can flip a near-tie and the samples after
it: the table gives the share of tokens equal to the first budget's. Run it alone: any other
load distorts the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dialogue_speed import SCRIPT  # noqa: E402

from soundstorm.allocator import keep_freed_memory  # noqa: E402
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline, Trace  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--voices", nargs=2, default=["flite-slt", "flite-awb"], help="two voices of MODELS/voices")
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 2400, 1200, 800, 400])
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the soundstorm command does

    pipeline = SpeechPipeline.from_folder(args.models, precision=args.precision)
    voices = {name: pipeline.voice(args.models / "voices" / f"{voice}.wav") for name, voice in zip("AB", args.voices)}
    plan = pipeline.plan_dialogue(SCRIPT, voices, DecodingOptions(seed=0))
    frames = sorted(((len(s.voice.semantic) + len(s.semantic)) * pipeline.ratio for s in plan.segments), reverse=True)

    seconds: dict[int, list[float]] = {budget: [] for budget in args.budgets}
    batches: dict[int, list[int]] = {}
    reference: torch.Tensor | None = None  # [T, Q] the first budget's codes
    agreement: dict[int, float] = {}
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        for budget in args.budgets:
            pipeline.batch_frames = budget or None
            sizes: list[int] = []
            original = pipeline.acoustic_batch

            def counted(segments, *rest, **keywords):  # noqa: ANN001, ANN002, ANN003, ANN202
                sizes.append(len(segments))
                return original(segments, *rest, **keywords)

            pipeline.acoustic_batch = counted  # type: ignore[method-assign]
            pipeline.timing.stages.clear()
            trace = Trace()
            pipeline.render([plan], traces=[trace])
            pipeline.acoustic_batch = original  # type: ignore[method-assign]
            reference = trace.codes if reference is None else reference
            agreement[budget] = float((trace.codes == reference).float().mean())
            batches[budget] = sizes
            if repeat:
                seconds[budget].append(pipeline.timing.stages["soundstorm"])

    rows = [{"budget": budget, "batches": batches[budget], "soundstorm_seconds": statistics.median(seconds[budget]),
             "runs": seconds[budget], "same_tokens": agreement[budget]} for budget in args.budgets]
    base = rows[0]["soundstorm_seconds"]
    print(f"SoundStorm stage of the {len(SCRIPT)}-turn dialogue ({', '.join(map(str, frames))} frames with prompts), "
          f"{args.threads} torch threads, {pipeline.precision}, steps {pipeline.default_steps}, medians of "
          f"{args.repeats} (torch {torch.__version__}):\n")
    print("| frame budget | batch sizes | SoundStorm (s) | speed-up vs the first | tokens as the first's |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['budget'] or 'none'} | {', '.join(map(str, row['batches']))} | {row['soundstorm_seconds']:.2f} | "
              f"{base / row['soundstorm_seconds']:.2f}x | {row['same_tokens']:.1%} |")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "frames": frames,
                                         "precision": pipeline.precision, "steps": pipeline.default_steps,
                                         "rows": rows, "torch": torch.__version__}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
