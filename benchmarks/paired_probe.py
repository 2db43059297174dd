"""Two `benchmarks/acoustic_probe.py --asr` runs compared sentence by sentence: the paired
difference in pocketsphinx's WER and CER of each variant, with its standard error.

    .venv/bin/python benchmarks/paired_probe.py docs/intelligibility/codec-scratch/ctl11k-L4.json \
        docs/intelligibility/codec-scratch/voices11k-L4.json

What it is for: two codecs (or decoders) heard on the same sentences. A probe's WER is pooled over
its sentences; with 72 of them a difference of 0.05 between two runs can be noise, and only the
per-sentence differences say. Both runs must have heard the same sentences (the same manifest,
--per-group, --groups and --seed); the variant compared is B's `--variant` (default `codec`,
the synthesizer's tokens decoded) against A's. The synthesizer's own audio is shown beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paired_eval import mean_and_error  # noqa: E402  # this folder is sys.path[0] when the script runs

from soundstorm.eval.asr import ErrorRates, error_rates  # noqa: E402


def per_sentence(texts: list[str], hypotheses: list[str]) -> list[ErrorRates]:
    return [error_rates([text], [heard]) for text, heard in zip(texts, hypotheses, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="the baseline's acoustic_probe JSON (--asr)")
    parser.add_argument("b", type=Path, help="the acoustic_probe JSON compared with it")
    parser.add_argument("--variant", default="codec", help="the variant of each run to compare (default: codec)")
    args = parser.parse_args()
    a, b = (json.loads(path.read_text(encoding="utf-8")) for path in (args.a, args.b))
    for path, run in ((args.a, a), (args.b, b)):
        if not run.get("hypotheses"):
            raise SystemExit(f"{path} holds no pocketsphinx hypotheses: run acoustic_probe.py with --asr")
    print(f"B = {args.b}\nA = {args.a}\n")
    print("| voices | n | WER synthesizer | WER A -> B | WER B - A | CER A -> B | CER B - A |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for group, texts in a["texts"].items():
        if b["texts"].get(group) != texts:
            raise SystemExit(f"{group}: the runs heard different sentences; use the same manifest, --per-group and --seed")
        heard_a, heard_b = a["hypotheses"][group], b["hypotheses"][group]
        if args.variant not in heard_a or args.variant not in heard_b:
            raise SystemExit(f"{group}: no variant {args.variant!r} in both runs (A has {sorted(heard_a)})")
        synth = error_rates(texts, heard_a["synth audio"]).wer
        pooled = [error_rates(texts, heard[args.variant]) for heard in (heard_a, heard_b)]
        sentences = list(zip(per_sentence(texts, heard_a[args.variant]), per_sentence(texts, heard_b[args.variant])))
        cells = []
        for metric in ("wer", "cer"):
            mean, error = mean_and_error([getattr(y, metric) - getattr(x, metric) for x, y in sentences])
            cells += [f"{getattr(pooled[0], metric):.3f} -> {getattr(pooled[1], metric):.3f}", f"{mean:+.3f} +- {error:.3f}"]
        print(f"| {group} | {len(texts)} | {synth:.3f} | {' | '.join(cells)} |")
    print("\n(WER and CER pooled over the sentences; B - A: the mean of the per-sentence differences +- its standard error)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
