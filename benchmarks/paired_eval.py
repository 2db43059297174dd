"""Two `soundstorm eval-tts` runs compared utterance by utterance: paired differences with
their standard errors, which separate settings that the per-group means of a few dozen
sentences cannot.

    .venv/bin/python benchmarks/paired_eval.py runs/tts-eval36-s16/tts_eval.json runs/tts-eval36-s8/tts_eval.json

Both runs must have spoken the same sentences from the same prompts (the same manifest,
--per-group and --seed: eval-tts gives every sentence its own seed, so a sweep of one knob
keeps the draws). For each group and for all utterances together: the mean of (B - A) for
speaker similarity to the prompt, CER and WER of the generated audio (each utterance scored
alone, as eval-tts scores a group), with the standard error of that mean.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.eval.asr import error_rates  # noqa: E402


def mean_and_error(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0] if values else math.nan), math.nan
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="tts_eval.json of the baseline run")
    parser.add_argument("b", type=Path, help="tts_eval.json of the run compared with it")
    args = parser.parse_args()
    runs = [json.loads(path.read_text(encoding="utf-8")) for path in (args.a, args.b)]
    a, b = ({u["id"]: u for u in run["utterances"]} for run in runs)
    shared = [key for key in a if key in b]
    mismatched = [key for key in shared if (a[key]["text"], a[key]["prompt_id"]) != (b[key]["text"], b[key]["prompt_id"])]
    if not shared or mismatched:
        raise SystemExit(f"the runs must speak the same sentences from the same prompts: {len(shared)} shared "
                         f"utterances, {len(mismatched)} with another text or prompt")

    def scores(u: dict) -> dict[str, float]:
        rates = error_rates([u["text"]], [u["generated_hypothesis"]])
        return {"similarity": u["generated_similarity"], "cer": rates.cer, "wer": rates.wer}

    groups = sorted({a[key]["group"] for key in shared}) + ["all"]
    print(f"B = {args.b}\nA = {args.a}\n")
    print("| utterances | n | similarity B - A | CER B - A | WER B - A |")
    print("|---|---:|---:|---:|---:|")
    for group in groups:
        keys = [key for key in shared if group == "all" or a[key]["group"] == group]
        cells = []
        for metric in ("similarity", "cer", "wer"):
            mean, error = mean_and_error([scores(b[key])[metric] - scores(a[key])[metric] for key in keys])
            cells.append(f"{mean:+.4f} +- {error:.4f}")
        print(f"| {group} | {len(keys)} | {' | '.join(cells)} |")
    print("\n(mean of the per-utterance differences +- its standard error)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
